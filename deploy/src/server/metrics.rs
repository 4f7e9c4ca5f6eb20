//! Prometheus metrics: requests by route and status, request latency histogram, requests in
//! flight (the queue depth: accepted, not yet answered), per-model histograms of the time a
//! request waits for a worker and of the time the model computes, windows and detections served.
//!
//! Written by hand: a handful of counters and histograms in the text exposition format, which
//! needs no registry machinery.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, status) → count.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Time from request to response.
    latency: Histogram,
    in_flight: AtomicI64,
    pub(crate) windows: AtomicU64,
    pub(crate) detections: AtomicU64,
}

/// Which histogram of a model a family shows.
type HistogramOf = fn(&super::models::Model) -> &Histogram;

/// A latency histogram over [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket counts (non-cumulative), then the +Inf bucket.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            elapsed.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the family `name` (its HELP and TYPE lines, then its series with `labels`).
    fn render(&self, s: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(s, name, labels);
    }

    /// Appends the series `name` with `labels` (`key="value"` pairs, comma-separated).
    fn render_series(&self, s: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(s, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(s, "{name}_sum{braced} {sum}");
        let _ = writeln!(
            s,
            "{name}_count{braced} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

impl Metrics {
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((route, status)).or_default() += 1;
        }
        self.latency.observe(elapsed);
    }

    /// The Prometheus text exposition, with the per-model series of `models`.
    pub(super) fn render(&self, models: &[std::sync::Arc<super::models::Model>]) -> String {
        let mut s = String::new();
        s.push_str("# HELP prism_requests_total HTTP requests by route and status.\n# TYPE prism_requests_total counter\n");
        if let Ok(map) = self.requests.lock() {
            for ((route, status), n) in map.iter() {
                let _ = writeln!(
                    s,
                    "prism_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        self.latency.render(
            &mut s,
            "prism_request_duration_seconds",
            "Time from request to response.",
            "",
        );
        s.push_str("# HELP prism_queue_depth Requests accepted and not yet answered.\n# TYPE prism_queue_depth gauge\n");
        let _ = writeln!(
            s,
            "prism_queue_depth {}",
            self.in_flight.load(Ordering::Relaxed).max(0)
        );
        let label = |name: &str| format!("model=\"{}\"", name.replace(['\\', '"', '\n'], "_"));
        let families: [(&str, &str, HistogramOf); 2] = [
            (
                "prism_queue_duration_seconds",
                "Time from a model request's arrival until a worker took it.",
                |m| &m.queue,
            ),
            (
                "prism_compute_duration_seconds",
                "Time the model computed for a request (all its windows for a stream request).",
                |m| &m.compute,
            ),
        ];
        for (name, help, histogram) in families {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
            for m in models {
                histogram(m).render_series(&mut s, name, &label(&m.name));
            }
        }
        s.push_str("# HELP prism_batches_total Batches the dynamic batcher ran.\n# TYPE prism_batches_total counter\n");
        for m in models {
            if let Some(b) = &m.batcher {
                let _ = writeln!(
                    s,
                    "prism_batches_total{{{}}} {}",
                    label(&m.name),
                    b.counts().0
                );
            }
        }
        s.push_str("# HELP prism_batched_requests_total Requests in those batches.\n# TYPE prism_batched_requests_total counter\n");
        for m in models {
            if let Some(b) = &m.batcher {
                let _ = writeln!(
                    s,
                    "prism_batched_requests_total{{{}}} {}",
                    label(&m.name),
                    b.counts().1
                );
            }
        }
        s.push_str("# HELP prism_sequences_open Sequences whose recurrent state the server holds.\n# TYPE prism_sequences_open gauge\n");
        for m in models {
            let _ = writeln!(
                s,
                "prism_sequences_open{{{}}} {}",
                label(&m.name),
                m.sequences.len()
            );
        }
        s.push_str("# HELP prism_windows_total Event windows run by the streaming endpoint.\n# TYPE prism_windows_total counter\n");
        let _ = writeln!(
            s,
            "prism_windows_total {}",
            self.windows.load(Ordering::Relaxed)
        );
        s.push_str("# HELP prism_detections_total Detections returned by the streaming endpoint.\n# TYPE prism_detections_total counter\n");
        let _ = writeln!(
            s,
            "prism_detections_total {}",
            self.detections.load(Ordering::Relaxed)
        );
        s
    }
}
