//! Where windows end and which label frame belongs to which window.
//!
//! RVT (`preprocess_dataset.py::labels_and_ev_repr_timestamps`) makes label timestamps fall on
//! window ends: the grid is anchored at the first label at or after 100 ms and extended backwards
//! in steps of the window length. prism keeps one fixed grid of `window_us` steps through that
//! anchor (RVT interpolates between label frames, which for 1Mpx is the same grid).
//!
//! The first window is the first one that starts after the recording's first event
//! (`end - window_us > t_first`): for a recording that starts near 0 this is RVT's choice too
//! (it drops the grid end in `(0, window]`). The last window is the last one that starts at or
//! before the last event.
//!
//! A label frame (all boxes with one timestamp `t`) goes to the window whose end is the smallest
//! grid end `>= t - jitter_us`, if that end is at most `max_lag_us` after `t`. When several frames
//! land on one window, the one nearest its end wins (the later on a tie).

use serde::{Deserialize, Serialize};

/// RVT's `align_t_ms`: the grid is anchored at the first label at or after this time.
pub const ANCHOR_AFTER_US: i64 = 100_000;

/// How label frames are attached to windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelAlign {
    /// A label this far after a window end still counts as on it (RVT accepts 2 ms of jitter;
    /// 1Mpx label clocks are off by a microsecond or so).
    pub jitter_us: i64,
    /// Largest distance from a label to the end of the window it goes to; `None`: one window.
    pub max_lag_us: Option<i64>,
}

impl Default for LabelAlign {
    /// The next window end at or after the label (within the jitter), up to one window away.
    fn default() -> Self {
        Self {
            jitter_us: 2_000,
            max_lag_us: None,
        }
    }
}

impl LabelAlign {
    /// RVT's rule: only labels within 2 ms of a window end are used, the others are dropped.
    pub fn strict() -> Self {
        Self {
            jitter_us: 2_000,
            max_lag_us: Some(2_000),
        }
    }
}

/// Window ends `anchor + k * step` for all integers `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowGrid {
    pub anchor_us: i64,
    pub step_us: i64,
}

impl WindowGrid {
    /// The grid through the first label at or after [`ANCHOR_AFTER_US`] (the first label when all
    /// are earlier; time 0 without labels). `label_times` must be sorted.
    pub fn from_labels(label_times: &[i64], step_us: i64) -> Self {
        let i = label_times.partition_point(|&t| t < ANCHOR_AFTER_US);
        let anchor_us = label_times
            .get(i)
            .or(label_times.first())
            .copied()
            .unwrap_or(0);
        Self { anchor_us, step_us }
    }

    /// The smallest grid end `>= t`.
    pub fn ceil(&self, t: i64) -> i64 {
        let k = (t - self.anchor_us).div_euclid(self.step_us);
        let end = self.anchor_us + k * self.step_us;
        if end < t {
            end + self.step_us
        } else {
            end
        }
    }

    /// End of the first window: the first one that starts after `first_event_us`.
    pub fn first_end(&self, first_event_us: i64) -> i64 {
        self.ceil(first_event_us + self.step_us + 1)
    }
}

/// The frame chosen for one window: `(window index, label time, frame index)`.
pub type Attached = (usize, i64, usize);

/// Attaches label frames (sorted, distinct times `frame_times`) to windows ending at `ends`
/// (sorted); returns one entry per window that gets a frame, sorted by window.
pub fn attach(
    frame_times: &[i64],
    ends: &[i64],
    align: LabelAlign,
    window_us: i64,
) -> Vec<Attached> {
    let max_lag = align.max_lag_us.unwrap_or(window_us);
    let mut best: Vec<Attached> = Vec::new();
    for (frame, &t) in frame_times.iter().enumerate() {
        let w = ends.partition_point(|&e| e < t - align.jitter_us);
        let Some(&end) = ends.get(w) else { continue };
        if end - t > max_lag {
            continue;
        }
        match best.last_mut() {
            Some(last) if last.0 == w => {
                // Frames come in time order, so on a tie in distance the later one replaces.
                if (end - t).abs() <= (end - last.1).abs() {
                    *last = (w, t, frame);
                }
            }
            _ => best.push((w, t, frame)),
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_is_first_label_after_100ms() {
        let g = WindowGrid::from_labels(&[20_000, 99_999, 130_000, 180_000], 50_000);
        assert_eq!(g.anchor_us, 130_000);
        assert_eq!(g.ceil(130_000), 130_000);
        assert_eq!(g.ceil(130_001), 180_000);
        assert_eq!(g.ceil(80_000), 80_000);
        assert_eq!(g.ceil(-1), 30_000);
        assert_eq!(WindowGrid::from_labels(&[5, 7], 10).anchor_us, 5);
        assert_eq!(WindowGrid::from_labels(&[], 10).anchor_us, 0);
    }

    #[test]
    fn first_window_starts_after_first_event() {
        // RVT with a label at 130 ms keeps ends 80 ms, 130 ms, ... for a recording from 0.
        let g = WindowGrid {
            anchor_us: 130_000,
            step_us: 50_000,
        };
        assert_eq!(g.first_end(0), 80_000);
        assert_eq!(g.first_end(29_999), 80_000);
        assert_eq!(g.first_end(30_000), 130_000);
        // Anchor on a multiple of the step: RVT drops the end at 50 ms.
        let g = WindowGrid {
            anchor_us: 100_000,
            step_us: 50_000,
        };
        assert_eq!(g.first_end(0), 100_000);
    }

    #[test]
    fn attach_rules() {
        let ends = [100, 150, 200, 250];
        let align = LabelAlign {
            jitter_us: 2,
            max_lag_us: None,
        };
        // 40: before the first window's reach (100 - 40 > 50); 50: exactly one window before
        // the first end; 150: on an end; 151: jitter -> 150 (nearer than 150 itself? no: tie
        // broken by distance, 150 is exact); 170: next end 200; 199 and 200 land on 200, 200
        // wins; 251: jitter -> 250; 260: past the last end.
        let times = [40, 50, 150, 151, 170, 199, 200, 251, 260];
        let got = attach(&times, &ends, align, 50);
        assert_eq!(got, vec![(0, 50, 1), (1, 150, 2), (2, 200, 6), (3, 251, 7)]);
        let strict = LabelAlign {
            jitter_us: 2,
            max_lag_us: Some(2),
        };
        let got = attach(&times, &ends, strict, 50);
        assert_eq!(got, vec![(1, 150, 2), (2, 200, 6), (3, 251, 7)]);
    }
}
