/* Streams an event file (raw little-endian arrays t:int64, x:uint16, y:uint16, p:uint8, as the
 * prism-deploy test fixtures store them) through a prism detector and prints one line per
 * detection: end_us class score x1 y1 x2 y2.
 *
 * usage: stream MODEL BACKEND EVENTS_DIR CHUNK
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prism.h"

static void *read_file(const char *dir, const char *name, size_t *size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void on_window(void *user, int64_t end_us, const PrismDetection *d, size_t n) {
    const PrismDetector *det = (const PrismDetector *)user;
    for (size_t i = 0; i < n; i++) {
        const char *name = prism_detector_class_name(det, d[i].class_id);
        printf("%lld %s %.6f %.4f %.4f %.4f %.4f\n", (long long)end_us, name ? name : "?", d[i].score,
               d[i].x1, d[i].y1, d[i].x2, d[i].y2);
    }
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s MODEL BACKEND EVENTS_DIR CHUNK\n", argv[0]); return 2; }
    PrismDetector *det = prism_detector_new(argv[1], argv[2]);
    if (!det) { fprintf(stderr, "error: %s\n", prism_last_error()); return 1; }
    size_t nt, nx, ny, np;
    int64_t *t = read_file(argv[3], "events_t.bin", &nt);
    uint16_t *x = read_file(argv[3], "events_x.bin", &nx);
    uint16_t *y = read_file(argv[3], "events_y.bin", &ny);
    uint8_t *p = read_file(argv[3], "events_p.bin", &np);
    size_t n = nt / 8, chunk = (size_t)atol(argv[4]);
    if (chunk == 0) chunk = 1;
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        if (prism_detector_push(det, t + i, x + i, y + i, p + i, k, on_window, det) != 0) {
            fprintf(stderr, "error: %s\n", prism_last_error());
            return 1;
        }
    }
    if (prism_detector_finish(det, on_window, det) != 0) { fprintf(stderr, "error: %s\n", prism_last_error()); return 1; }
    /* Bad input is an error, not a crash. */
    if (prism_detector_push(NULL, t, x, y, p, 1, on_window, NULL) != -1 || !prism_last_error()) return 3;
    prism_detector_free(det);
    free(t); free(x); free(y); free(p);
    return 0;
}
