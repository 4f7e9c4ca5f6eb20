//! Prometheus metrics: requests by route and status, request latency histogram, requests in
//! flight (the queue depth: accepted, not yet answered), windows and detections served.

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
    /// Per-bucket counts (non-cumulative), then the +Inf bucket.
    latency_buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    in_flight: AtomicI64,
    pub(crate) windows: AtomicU64,
    pub(crate) detections: AtomicU64,
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
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            elapsed.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
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
        s.push_str("# HELP prism_request_duration_seconds Time from request to response.\n# TYPE prism_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "prism_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.latency_buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "prism_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "prism_request_duration_seconds_sum {sum}");
        let _ = writeln!(
            s,
            "prism_request_duration_seconds_count {}",
            self.latency_count.load(Ordering::Relaxed)
        );
        s.push_str("# HELP prism_queue_depth Requests accepted and not yet answered.\n# TYPE prism_queue_depth gauge\n");
        let _ = writeln!(
            s,
            "prism_queue_depth {}",
            self.in_flight.load(Ordering::Relaxed).max(0)
        );
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
