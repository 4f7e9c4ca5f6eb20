//! Which label frames are kept and where windows end: RVT's rule.
//!
//! A transcription of `labels_and_ev_repr_timestamps` in RVT's
//! `scripts/genx/preprocess_dataset.py` (uzh-rpg/RVT @ b80f568), step by step:
//!
//! 1. The first label frame at or after 100 ms (`align_t_ms`) is kept.
//! 2. Each later frame is kept when its distance to the last kept frame is within 2 ms of a
//!    multiple `count > 0` of the *base delta*; `count * windows_per_base` windows lie between
//!    the two frames. The base delta is the label clock's ([`LabelClock`]): 250 ms for Gen1, 3
//!    (30 Hz labels) or 6 (60 Hz) median label periods for 1Mpx, about 100 ms; two windows per
//!    base delta (RVT's `ts_step_frame_ms // ts_step_ev_repr_ms` = 100 ms / 50 ms).
//! 3. Window ends: before the first kept frame `f0`, every `window_us` back from it, without
//!    the one in `(0, window_us]`; between kept frames, `numpy.linspace` from one to the next
//!    with `count * windows_per_base + 1` points, truncated to integers; the last end is the
//!    last kept frame. Each kept frame is the end of its own window.
//!
//! So windows depend on the label times only, and a frame's boxes belong to the window ending
//! exactly at the frame's time. With a jittered label clock the ends are not a grid.
//!
//! Where RVT stops with an assertion, this module decides instead (each is tested): a frame
//! within 2 ms of the last kept one (`count == 0`) is skipped; labels that all lie before 100 ms
//! keep no frame; a 1Mpx clock that is neither 30 nor 60 Hz is an error naming the rate; a
//! sequence whose windows would exceed [`MAX_WINDOWS`] is an error rather than an allocation.
//!
//! Gen1 under this rule: the 250 ms base delta with two windows per base delta puts window ends
//! 125 ms apart between label frames (50 ms before the first). That is what RVT's published
//! script computes; RVT's maintainer notes that the published Gen1 data was made before the
//! script was refactored (uzh-rpg/RVT issue 22).

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// RVT's `align_t_ms`: the first label frame kept is the first at or after this time.
pub const ALIGN_AFTER_US: i64 = 100_000;

/// RVT accepts label times this far from a multiple of the base delta.
pub const JITTER_US: i64 = 2_000;

/// RVT's `ts_step_frame_ms`: the base delta that `windows_per_base` windows divide.
pub const FRAME_STEP_US: i64 = 100_000;

/// Most windows one sequence may have (about 2.3 days of 50 ms windows): a label file whose
/// times would need more is refused instead of exhausting memory.
pub const MAX_WINDOWS: usize = 4_000_000;

/// How often label frames are kept (the base delta of RVT's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelClock {
    /// RVT's Gen1 rule: a frame every 250 ms (`delta_t_us_4hz`).
    Gen1,
    /// RVT's 1Mpx rule: 3 median label periods for 30 Hz labels, 6 for 60 Hz (about 10 Hz);
    /// other rates are refused, as RVT refuses them.
    Gen4,
    /// Not RVT's: the base delta is one median label period, so a periodic clock keeps every
    /// frame, with `round(period / window_us)` windows per period. For label clocks RVT's two
    /// rules do not cover, such as prism's synthetic scenes (20 Hz).
    EveryFrame,
}

impl LabelClock {
    /// The clock RVT uses for a sensor: Gen1 (304x240), 1Mpx (1280x720), else [`Self::EveryFrame`].
    pub fn for_sensor(width: usize, height: usize) -> Self {
        match (width, height) {
            (304, 240) => Self::Gen1,
            (1280, 720) => Self::Gen4,
            _ => Self::EveryFrame,
        }
    }

    /// By name: `gen1`, `gen4` (or `1mpx`), `every-frame`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gen1" => Some(Self::Gen1),
            "gen4" | "1mpx" => Some(Self::Gen4),
            "every-frame" => Some(Self::EveryFrame),
            _ => None,
        }
    }

    /// The base delta and the windows per base delta for these (sorted, distinct) label times,
    /// `None` when fewer than two times leave nothing to measure.
    fn base_delta(self, times: &[i64], window_us: i64) -> Result<Option<(i64, i64)>> {
        let rvt_windows = || {
            if window_us > FRAME_STEP_US || FRAME_STEP_US % window_us != 0 {
                return Err(DataError::Invalid(format!(
                    "RVT's label rule needs a window step that divides 100 ms, got {window_us} µs"
                )));
            }
            Ok(FRAME_STEP_US / window_us)
        };
        match self {
            Self::Gen1 => Ok(Some((250_000, rvt_windows()?))),
            Self::Gen4 => {
                let Some(median) = median_period(times) else {
                    return Ok(None);
                };
                let hz = (1e6 / median).round_ties_even();
                let periods = match hz as i64 {
                    30 => 3.0,
                    60 => 6.0,
                    _ => {
                        return Err(DataError::Invalid(format!(
                            "the labels come at {hz} Hz (median period {median} µs); RVT's 1Mpx \
                             rule takes 30 or 60 Hz labels (choose the every-frame label clock)"
                        )))
                    }
                };
                Ok(Some(((periods * median) as i64, rvt_windows()?)))
            }
            Self::EveryFrame => {
                let Some(median) = median_period(times) else {
                    return Ok(None);
                };
                let base = (median as i64).max(1);
                let per_base = ((base as f64 / window_us as f64).round() as i64).max(1);
                Ok(Some((base, per_base)))
            }
        }
    }
}

/// `numpy.median(numpy.diff(times))`.
fn median_period(times: &[i64]) -> Option<f64> {
    let mut diffs: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    if diffs.is_empty() {
        return None;
    }
    diffs.sort_unstable();
    let n = diffs.len();
    Some(if n % 2 == 1 {
        diffs[n / 2] as f64
    } else {
        (diffs[n / 2 - 1] as f64 + diffs[n / 2] as f64) / 2.0
    })
}

/// The windows of one sequence and the label frames kept on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Window ends in µs, strictly increasing.
    pub ends: Vec<i64>,
    /// `(frame, window)`: index of a kept frame in the frame list given, and the window that ends
    /// at its time; in time order.
    pub kept: Vec<(usize, usize)>,
}

/// RVT's timeline for label frames at `frame_times` (sorted, distinct); see the module
/// documentation. No frame at or after 100 ms: an empty timeline.
pub fn rvt_timeline(frame_times: &[i64], clock: LabelClock, window_us: i64) -> Result<Timeline> {
    if window_us <= 0 {
        return Err(DataError::Invalid(format!(
            "window_us must be positive, got {window_us}"
        )));
    }
    if frame_times.windows(2).any(|w| w[0] >= w[1]) {
        return Err(DataError::Invalid(
            "label frame times must be sorted and distinct".into(),
        ));
    }
    let first = frame_times.partition_point(|&t| t < ALIGN_AFTER_US);
    let Some(&f0) = frame_times.get(first) else {
        return Ok(Timeline::default());
    };
    // Kept frames and the windows between each and the next.
    let mut kept = vec![first];
    let mut between: Vec<i64> = Vec::new();
    let mut windows = windows_before(f0, window_us)?.saturating_add(1);
    let later = if first + 1 < frame_times.len() {
        clock.base_delta(frame_times, window_us)?
    } else {
        None
    };
    if let Some((base, per_base)) = later {
        for (i, &t) in frame_times.iter().enumerate().skip(first + 1) {
            let diff = t - frame_times[kept[kept.len() - 1]];
            let count = (diff as f64 / base as f64).round_ties_even();
            if (diff as f64 - count * base as f64).abs() > JITTER_US as f64 || count < 1.0 {
                continue;
            }
            let n = (count as i64).saturating_mul(per_base);
            windows = windows.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            if windows > MAX_WINDOWS {
                return Err(too_many(frame_times[first], t, window_us));
            }
            kept.push(i);
            between.push(n);
        }
    }
    if windows > MAX_WINDOWS {
        return Err(too_many(0, f0, window_us));
    }
    let mut ends = Vec::with_capacity(windows);
    let before = windows_before(f0, window_us)? as i64;
    ends.extend((1..=before).rev().map(|k| f0 - k * window_us));
    for (pair, &n) in between.iter().enumerate() {
        let (start, stop) = (frame_times[kept[pair]], frame_times[kept[pair + 1]]);
        let last = pair + 1 == between.len();
        ends.extend(linspace_i64(start, stop, n + 1).take(if last { n + 1 } else { n } as usize));
    }
    if between.is_empty() {
        ends.push(f0);
    }
    let kept = kept
        .into_iter()
        .map(|frame| (frame, ends.partition_point(|&e| e < frame_times[frame])))
        .collect();
    Ok(Timeline { ends, kept })
}

/// Ends RVT puts before the first kept frame `f0 > 0`: `list(reversed(range(f0, 0, -step)))[1:-1]`
/// has `len - 2` entries.
fn windows_before(f0: i64, step: i64) -> Result<usize> {
    let len = (f0 - 1) / step + 1;
    let n = usize::try_from((len - 2).max(0)).unwrap_or(usize::MAX);
    if n > MAX_WINDOWS {
        return Err(too_many(0, f0, step));
    }
    Ok(n)
}

fn too_many(from: i64, to: i64, window_us: i64) -> DataError {
    DataError::Invalid(format!(
        "the labels span {from} to {to} µs, more than {MAX_WINDOWS} windows of {window_us} µs; \
         are the label times in microseconds?"
    ))
}

/// `numpy.asarray(numpy.linspace(start, stop, num), dtype='int64')`: `i * step + start` in
/// `f64`, the last point exactly `stop`, truncated toward zero.
fn linspace_i64(start: i64, stop: i64, num: i64) -> impl Iterator<Item = i64> {
    let div = (num - 1).max(1) as f64;
    let step = (stop as f64 - start as f64) / div;
    (0..num).map(move |i| {
        if i == num - 1 && num > 1 {
            stop
        } else {
            (i as f64 * step + start as f64) as i64
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(period_us: f64, from: i64, n: usize) -> Vec<i64> {
        (0..n)
            .map(|k| from + (k as f64 * period_us).round() as i64)
            .collect()
    }

    #[test]
    fn gen1_keeps_a_frame_every_250_ms_with_windows_125_ms_apart() -> Result<()> {
        let t = rvt_timeline(
            &[50_000, 250_000, 500_000, 600_000, 750_000],
            LabelClock::Gen1,
            50_000,
        )?;
        // 250 ms is the first frame at or after 100 ms; 600 ms is 100 ms off the 250 ms beat.
        assert_eq!(t.kept, vec![(1, 3), (2, 5), (4, 7)]);
        assert_eq!(
            t.ends,
            vec![100_000, 150_000, 200_000, 250_000, 375_000, 500_000, 625_000, 750_000]
        );
        Ok(())
    }

    #[test]
    fn gen4_at_30_hz_keeps_every_third_frame_with_50_ms_windows() -> Result<()> {
        let frames = times(1e6 / 30.0, 0, 31);
        let t = rvt_timeline(&frames, LabelClock::Gen4, 50_000)?;
        let kept_times: Vec<i64> = t.kept.iter().map(|&(f, _)| frames[f]).collect();
        assert_eq!(&kept_times[..3], &[100_000, 200_000, 300_000]);
        for &(f, w) in &t.kept {
            assert_eq!(t.ends[w], frames[f]);
        }
        // RVT drops the end in (0, 50 ms] and the frame itself from the ends before it: none here.
        assert_eq!(t.ends[..3], [100_000, 150_000, 200_000]);
        assert_eq!(*t.ends.last().unwrap_or(&0), 1_000_000);
        Ok(())
    }

    #[test]
    fn where_rvt_asserts_prism_decides() {
        // No frame at or after 100 ms.
        assert_eq!(
            rvt_timeline(&[10, 20], LabelClock::Gen1, 50_000).ok(),
            Some(Timeline::default())
        );
        // A single frame: no base delta needed (RVT's median of nothing would fail).
        let one = rvt_timeline(&[100_000], LabelClock::Gen4, 50_000).ok();
        assert_eq!(one.map(|t| t.ends), Some(vec![100_000]));
        // 20 Hz labels under the 1Mpx rule: an error naming the rate.
        let err = rvt_timeline(&times(50_000.0, 0, 10), LabelClock::Gen4, 50_000);
        assert!(
            matches!(&err, Err(DataError::Invalid(m)) if m.contains("20 Hz")),
            "{err:?}"
        );
        // A frame 1 ms after the kept one (count 0) is skipped.
        let t = rvt_timeline(&[100_000, 101_000, 350_000], LabelClock::Gen1, 50_000).ok();
        assert_eq!(
            t.map(|t| t.kept.iter().map(|k| k.0).collect::<Vec<_>>()),
            Some(vec![0, 2])
        );
        // Times in nanoseconds by mistake: refused, not allocated.
        let err = rvt_timeline(&[100_000, 4_000_000_100_000], LabelClock::Gen1, 50_000);
        assert!(
            matches!(&err, Err(DataError::Invalid(m)) if m.contains("microseconds")),
            "{err:?}"
        );
        let err = rvt_timeline(&[i64::MAX / 2], LabelClock::Gen1, 50_000);
        assert!(err.is_err());
    }

    #[test]
    fn every_frame_keeps_a_periodic_clock_whole() -> Result<()> {
        let frames = times(50_000.0, 50_000, 20);
        let t = rvt_timeline(&frames, LabelClock::EveryFrame, 50_000)?;
        assert_eq!(t.kept.len(), 19);
        assert_eq!(t.ends, times(50_000.0, 100_000, 19));
        Ok(())
    }

    #[test]
    fn linspace_truncates_like_numpy() {
        let v: Vec<i64> = linspace_i64(100_000, 200_001, 3).collect();
        assert_eq!(v, vec![100_000, 150_000, 200_001]);
        let v: Vec<i64> = linspace_i64(0, 10, 4).collect();
        assert_eq!(v, vec![0, 3, 6, 10]);
    }
}
