//! Mapping data values to pixels along one axis, linear or log-10, with ranges fitted
//! to the data (padded, never empty).

use crate::font::TextStyle;
use crate::ticks::{self, Tick};

/// A data range along one axis, and how to map it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scale {
    /// Log-10 axis (then `lo > 0`).
    pub log: bool,
    /// Smallest value shown, in data units.
    pub lo: f64,
    /// Largest value shown, in data units.
    pub hi: f64,
}

impl Scale {
    /// Whether `v` can be placed on this kind of axis: finite, and positive on a log axis.
    pub fn accepts(log: bool, v: f64) -> bool {
        v.is_finite() && (!log || v > 0.0)
    }

    /// A range covering `values` (those the axis cannot show are skipped), widened by
    /// `pad` of its span on both sides. `fixed`, when valid, wins and is used as is.
    /// All-equal values get a range around them; no values give `0..1` (`1..10` on log).
    pub fn fit(
        values: impl IntoIterator<Item = f64>,
        log: bool,
        fixed: Option<(f64, f64)>,
        pad: f64,
    ) -> Scale {
        if let Some((lo, hi)) = fixed {
            if Self::accepts(log, lo) && Self::accepts(log, hi) && lo < hi {
                return Scale { log, lo, hi };
            }
        }
        // Work in "axis space": log10 on log axes.
        let to = |v: f64| if log { v.log10() } else { v };
        let from = |v: f64| if log { 10f64.powf(v) } else { v };
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            if Self::accepts(log, v) {
                let a = to(v);
                lo = lo.min(a);
                hi = hi.max(a);
            }
        }
        if lo > hi {
            return if log {
                Scale {
                    log,
                    lo: 1.0,
                    hi: 10.0,
                }
            } else {
                Scale {
                    log,
                    lo: 0.0,
                    hi: 1.0,
                }
            };
        }
        let span = hi - lo;
        let mag = lo.abs().max(hi.abs());
        let (lo, hi) = if !span.is_finite() {
            // Only reachable for values near f64::MAX of both signs: halve the range.
            (lo / 2.0, hi / 2.0)
        } else if span <= mag * 1e-9 || span == 0.0 {
            let mid = (lo + hi) / 2.0;
            let half = if log {
                0.5
            } else if mid == 0.0 {
                1.0
            } else {
                mid.abs() * 0.1
            };
            (mid - half, mid + half)
        } else {
            let p = span * pad.clamp(0.0, 1.0);
            (lo - p, hi + p)
        };
        let (lo, hi) = (from(lo), from(hi));
        if Self::accepts(log, lo) && Self::accepts(log, hi) && lo < hi {
            Scale { log, lo, hi }
        } else if log {
            Scale {
                log,
                lo: 1.0,
                hi: 10.0,
            }
        } else {
            Scale {
                log,
                lo: 0.0,
                hi: 1.0,
            }
        }
    }

    /// Position of `v` as a fraction of the axis (0 at `lo`, 1 at `hi`); `None` when the
    /// axis cannot show `v`. Values outside the range give fractions outside `0..=1`.
    pub fn frac(&self, v: f64) -> Option<f64> {
        if !Self::accepts(self.log, v) {
            return None;
        }
        let t = if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        t.is_finite().then_some(t)
    }

    /// Maps `v` to a pixel coordinate, `p0` at `lo` and `p1` at `hi`.
    pub fn px(&self, v: f64, p0: f64, p1: f64) -> Option<f64> {
        self.frac(v)
            .map(|t| p0 + t * (p1 - p0))
            .filter(|p| p.is_finite())
    }

    /// As many ticks (up to 10) as fit side by side, labels drawn with `st`, along an
    /// axis `width` pixels long.
    pub fn ticks_fitting(&self, width: i32, st: &TextStyle) -> Vec<Tick> {
        let gap = st.width("   ");
        let mut target = ((width / (st.line_height() * 5)).max(2) as usize).min(10);
        loop {
            let t = self.ticks(target);
            let need: i32 = t.iter().map(|t| st.width(&t.label) + gap).sum();
            if need <= width || target <= 2 {
                return t;
            }
            target -= 1;
        }
    }

    /// About `target` ticks inside the range.
    pub fn ticks(&self, target: usize) -> Vec<Tick> {
        if self.log {
            ticks::log(self.lo, self.hi, target)
        } else {
            ticks::linear(self.lo, self.hi, target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_and_pads() {
        let s = Scale::fit([0.0, 10.0], false, None, 0.1);
        assert_eq!((s.lo, s.hi), (-1.0, 11.0));
        let s = Scale::fit([5.0, 5.0], false, None, 0.1);
        assert!(s.lo < 5.0 && s.hi > 5.0);
        let s = Scale::fit([0.0], false, None, 0.1);
        assert_eq!((s.lo, s.hi), (-1.0, 1.0));
        let s = Scale::fit([f64::NAN, f64::INFINITY], false, None, 0.1);
        assert_eq!((s.lo, s.hi), (0.0, 1.0));
    }

    #[test]
    fn log_skips_non_positive() {
        let s = Scale::fit([-1.0, 0.0, 1e-3, 1.0], true, None, 0.0);
        assert!((s.lo - 1e-3).abs() < 1e-12 && (s.hi - 1.0).abs() < 1e-12);
        assert_eq!(s.frac(0.0), None);
        assert_eq!(s.frac(-2.0), None);
        let s = Scale::fit([2.0, 2.0], true, None, 0.0);
        assert!(s.lo < 2.0 && s.hi > 2.0 && s.lo > 0.0);
    }

    #[test]
    fn fixed_range_wins_when_valid() {
        let s = Scale::fit([0.5], false, Some((0.0, 1.0)), 0.1);
        assert_eq!((s.lo, s.hi), (0.0, 1.0));
        let s = Scale::fit([0.5], true, Some((0.0, 1.0)), 0.0);
        assert!(s.lo > 0.0);
        let s = Scale::fit([-f64::MAX, f64::MAX], false, None, 0.1);
        assert!(s.lo.is_finite() && s.hi.is_finite() && s.lo < s.hi);
    }
}
