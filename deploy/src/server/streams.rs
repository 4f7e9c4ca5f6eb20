//! prism's streaming endpoint for event cameras: `POST /v2/models/{name}/streams/{id}/events`
//! pushes one chunk of client stream `id`'s events (JSON or the binary layout of
//! [`super::protocol::decode_binary_events`]) and answers the windows it completed with their
//! detections; each stream has its own [`StreamDetector`] and recurrent state.
//! `DELETE /v2/models/{name}/streams/{id}` drops a stream.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prism_core::spec::Task;
use serde_json::json;

use super::models::Model;
use super::protocol::{self, DetectionJson, EventsRequest, EventsResponse, GapJson, WindowJson};
use super::{err, http, parse, App, HttpError, Reply};
use crate::error::{DeployError, Result};
use crate::stream::{Gap, StreamDetector, StreamOptions, StreamSink, WindowDetections};

fn valid_stream_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Collects a stream request's response, and stops the stream at the deadline or on shutdown.
struct StreamResponder<'a> {
    app: &'a App,
    model: &'a Model,
    deadline: Instant,
    response: EventsResponse,
    /// Why the stream was stopped, if it was.
    stopped: Option<HttpError>,
}

impl StreamSink for StreamResponder<'_> {
    type Error = DeployError;

    fn window(&mut self, w: &WindowDetections<'_>) -> Result<bool> {
        if w.num_events == 0 && w.detections.is_empty() {
            self.response.empty_windows += 1;
        } else {
            let classes = &self.model.engine.spec().classes;
            self.response.windows.push(WindowJson {
                index: w.index,
                start_us: w.start_us,
                end_us: w.end_us,
                num_events: w.num_events,
                detections: w
                    .detections
                    .iter()
                    .map(|d| DetectionJson::new(d, classes))
                    .collect(),
            });
        }
        Ok(self.go_on())
    }

    fn gap(&mut self, gap: &Gap) -> Result<bool> {
        self.response.gaps.push(GapJson {
            last_us: gap.last_us,
            next_us: gap.next_us,
        });
        Ok(self.go_on())
    }
}

impl StreamResponder<'_> {
    fn go_on(&mut self) -> bool {
        if self.app.stop.load(Ordering::SeqCst) {
            self.stopped = Some(err(503, "the server is shutting down"));
        } else if Instant::now() >= self.deadline {
            let windows = self.response.windows.len() + self.response.empty_windows;
            self.stopped = Some(err(
                408,
                format!(
                    "the request's {} s deadline passed after {windows} windows",
                    self.app.options.deadline.as_secs_f64()
                ),
            ));
        }
        self.stopped.is_none()
    }
}

pub(super) fn stream_events(
    app: &App,
    model: &Model,
    id: &str,
    query: &str,
    request: &http::Request,
    arrived: Instant,
) -> std::result::Result<Reply, HttpError> {
    if model.engine.spec().task != Task::EventDetection {
        return Err(err(
            400,
            format!(
                "model `{}` is not an event-detection model; use /infer",
                model.name
            ),
        ));
    }
    if !valid_stream_id(id) {
        return Err(err(
            400,
            "stream ids are 1-128 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    let binary = request
        .header("Content-Type")
        .is_some_and(|v| v.trim().starts_with("application/octet-stream"));
    let req: EventsRequest = if binary {
        let finish = query
            .split('&')
            .any(|kv| kv == "finish=true" || kv == "finish=1");
        protocol::decode_binary_events(&request.body.contiguous(), finish)
            .map_err(|e| err(400, e.to_string()))?
    } else {
        parse(&request.body.contiguous())?
    };
    let (detector, created) = {
        let mut streams = model.streams.lock().unwrap_or_else(|e| e.into_inner());
        match streams.get(id) {
            Some(d) => (d.clone(), false),
            None => {
                if streams.len() >= app.options.max_streams {
                    return Err(err(
                        429,
                        format!("too many open streams (limit {})", app.options.max_streams),
                    ));
                }
                let options = StreamOptions {
                    max_gap_us: app.options.max_gap_us,
                    ..StreamOptions::default()
                };
                let d = Arc::new(Mutex::new(StreamDetector::with_options(
                    model.engine.clone(),
                    options,
                )?));
                streams.insert(id.to_string(), d.clone());
                (d, true)
            }
        }
    };
    let forget = || {
        model
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    };
    let mut d = detector.lock().unwrap_or_else(|e| e.into_inner());
    // Refusals that leave the stream as it was: nothing of this request is used.
    let refused = admit(app, &d, &req);
    if let Err(mut e) = refused {
        drop(d);
        if created {
            forget();
        } else {
            e.message
                .push_str("; nothing of this request was used, the stream goes on");
        }
        return Err(e);
    }
    let mut sink = StreamResponder {
        app,
        model,
        deadline: arrived + app.options.deadline,
        response: EventsResponse {
            windows: Vec::new(),
            empty_windows: 0,
            gaps: Vec::new(),
        },
        stopped: None,
    };
    let computing = Instant::now();
    let result = d
        .push_slices(&req.t, &req.x, &req.y, &req.p, &mut sink)
        .and_then(|pushed| match req.finish && !pushed.stopped {
            true => d.finish(&mut sink),
            false => Ok(pushed),
        });
    drop(d);
    model.compute.observe(computing.elapsed());
    if let Some(mut stopped) = sink.stopped {
        forget();
        stopped
            .message
            .push_str("; the stream was dropped, start it again");
        return Err(stopped);
    }
    if result.is_err() || req.finish {
        forget();
    }
    if let Err(e) = result {
        let mut e = HttpError::from(e);
        e.message
            .push_str(" (the stream was dropped; start it again)");
        return Err(e);
    }
    let response = sink.response;
    let n: usize = response.windows.iter().map(|w| w.detections.len()).sum();
    let windows = response.windows.len() + response.empty_windows;
    app.metrics
        .windows
        .fetch_add(windows as u64, Ordering::Relaxed);
    app.metrics
        .detections
        .fetch_add(n as u64, Ordering::Relaxed);
    Ok(Reply::json(200, &response))
}

/// Checks a stream request against the stream and the server's limits before any work.
fn admit(app: &App, d: &StreamDetector, req: &EventsRequest) -> std::result::Result<(), HttpError> {
    let events =
        prism_events::EventSlice::new(&req.t, &req.x, &req.y, &req.p).ok_or_else(|| {
            err(
                400,
                format!(
                    "event arrays differ in length: t {}, x {}, y {}, p {}",
                    req.t.len(),
                    req.x.len(),
                    req.y.len(),
                    req.p.len()
                ),
            )
        })?;
    d.check(events).map_err(|e| err(400, e.to_string()))?;
    let limit = app.options.max_windows_per_request;
    let due = d.windows_due(&req.t, req.finish);
    if due > limit {
        return Err(err(
            413,
            format!("the request would complete {due} windows; at most {limit} per request (send fewer events at a time)"),
        ));
    }
    let held = d.buffered_events().saturating_add(req.t.len());
    if held > app.options.max_stream_events {
        return Err(err(
            413,
            format!(
                "the stream would hold {held} events; at most {} (its windows are not complete yet: send later events)",
                app.options.max_stream_events
            ),
        ));
    }
    Ok(())
}

pub(super) fn drop_stream(model: &Model, id: &str) -> Reply {
    let removed = model
        .streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id)
        .is_some();
    if removed {
        Reply::empty(200)
    } else {
        Reply::json(404, &json!({ "error": format!("no stream `{id}`") }))
    }
}
