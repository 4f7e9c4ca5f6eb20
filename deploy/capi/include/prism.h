/* prism-deploy C API: run a prism event-camera detector (ONNX with `prism` metadata) from C.
 *
 * Link with -lprism (libprism.so, built by `cargo build -p prism-deploy-capi`). All functions are thread-safe with respect to different detectors;
 * one detector must not be used from two threads at once. Errors: functions return a non-zero
 * status (or NULL) and prism_last_error() returns the message for the calling thread.
 */
#ifndef PRISM_DEPLOY_H
#define PRISM_DEPLOY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opaque streaming detector (one event stream, with its own recurrent state). */
typedef struct PrismDetector PrismDetector;

/* One detection, in sensor pixels. */
typedef struct PrismDetection {
    float x1, y1, x2, y2;
    float score;
    uint32_t class_id;
} PrismDetection;

/* Called once per completed window, with its end time (microseconds) and its detections
 * (valid only during the call). */
typedef void (*PrismWindowCallback)(void *user, int64_t end_us, const PrismDetection *detections, size_t count);

/* Loads `model_path` on `backend` ("tract", "ort-cpu", "ort-cuda", "ort-tensorrt").
 * Returns NULL on error (see prism_last_error). */
PrismDetector *prism_detector_new(const char *model_path, const char *backend);

/* Pushes `count` time-sorted events (t in microseconds, x, y, polarity 0/1); `callback` runs for
 * every window they complete. Events outside the sensor, with another polarity or out of time
 * order are refused whole (-1, nothing used). A pause of more than 1 s between events ends the
 * sequence: its last windows run, the state is reset and the window grid starts again, as for a
 * new recording; the empty windows of the pause are not run. Returns 0, or -1 on error. */
int prism_detector_push(PrismDetector *detector, const int64_t *t, const uint16_t *x, const uint16_t *y,
                        const uint8_t *p, size_t count, PrismWindowCallback callback, void *user);

/* Ends the stream: runs the remaining windows. Returns 0, or -1 on error. */
int prism_detector_finish(PrismDetector *detector, PrismWindowCallback callback, void *user);

/* Starts a new sequence (zero state, new window grid). Returns 0, or -1 on error. */
int prism_detector_reset(PrismDetector *detector);

/* Number of classes, and the name of class `index` (NUL-terminated, owned by the detector;
 * NULL when out of range). */
size_t prism_detector_num_classes(const PrismDetector *detector);
const char *prism_detector_class_name(const PrismDetector *detector, size_t index);

/* Frees a detector (NULL is ignored). */
void prism_detector_free(PrismDetector *detector);

/* The last error message of the calling thread (NUL-terminated, valid until the next call),
 * or NULL when there was none. */
const char *prism_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* PRISM_DEPLOY_H */
