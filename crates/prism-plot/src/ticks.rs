//! Nice tick positions (the 1-2-5 rule) and compact tick labels.
//!
//! Labels are short and consistent within an axis: `0.05`, `0.10`; `1.5k`, `2M`;
//! `1e-4`, `2.0e-4` for small numbers. Values that are zero up to rounding print as `0`.

/// One tick: a position in data units and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    /// Position in data units.
    pub value: f64,
    /// Formatted label.
    pub label: String,
}

/// A "nice" step (1, 2 or 5 times a power of ten) close to `span / target`.
///
/// Returns `None` when `span` is not positive and finite.
pub fn nice_step(span: f64, target: usize) -> Option<f64> {
    if !(span.is_finite() && span > 0.0) {
        return None;
    }
    let raw = span / target.max(1) as f64;
    let e = raw.log10().floor();
    let base = 10f64.powf(e);
    let r = raw / base;
    let m = if r < 1.5 {
        1.0
    } else if r < 3.0 {
        2.0
    } else if r < 7.0 {
        5.0
    } else {
        10.0
    };
    let step = m * base;
    (step.is_finite() && step > 0.0).then_some(step)
}

/// The next smaller nice step: 10 -> 5 -> 2 -> 1 -> 0.5 ...
fn smaller_step(step: f64) -> f64 {
    let e = step.log10().floor();
    let base = 10f64.powf(e);
    let m = (step / base).round();
    if m >= 5.0 {
        2.0 * base
    } else if m >= 2.0 {
        base
    } else {
        0.5 * base
    }
}

/// Multiples of `step` within `[lo, hi]` (with a little tolerance at the ends).
fn multiples(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let tol = 1e-9;
    let first = (lo / step - tol).ceil();
    let last = (hi / step + tol).floor();
    if !(first.is_finite() && last.is_finite()) || last < first || last - first > 1000.0 {
        return Vec::new();
    }
    let n = (last - first) as i64;
    (0..=n).map(|i| (first + i as f64) * step).collect()
}

/// Ticks for a linear axis over `[lo, hi]`, aiming at about `target` ticks (at least two
/// whenever the range is valid). Empty when `lo`/`hi` are not finite or `lo >= hi`.
pub fn linear(lo: f64, hi: f64, target: usize) -> Vec<Tick> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Vec::new();
    }
    let Some(mut step) = nice_step(hi - lo, target.clamp(2, 100)) else {
        return Vec::new();
    };
    let mut values = multiples(lo, hi, step);
    // A coarse step can leave a single tick in range: refine until there are two.
    for _ in 0..4 {
        if values.len() >= 2 {
            break;
        }
        step = smaller_step(step);
        values = multiples(lo, hi, step);
    }
    let max_abs = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    values
        .into_iter()
        .map(|value| Tick {
            value,
            label: format_linear(value, step, max_abs),
        })
        .collect()
}

/// Ticks for a log-10 axis over `[lo, hi]` (both positive): powers of ten, or 1-2-5
/// multiples when the range spans less than about two decades, or linear ticks when
/// it is narrower still. Empty when the range is invalid.
pub fn log(lo: f64, hi: f64, target: usize) -> Vec<Tick> {
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo < hi) {
        return Vec::new();
    }
    let (a, b) = (lo.log10(), hi.log10());
    let target = target.clamp(2, 100);
    let d0 = (a - 1e-9).ceil() as i64;
    let d1 = (b + 1e-9).floor() as i64;
    let decades = (d1 - d0 + 1).max(0);
    let in_range = |v: f64| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9);
    let mut values: Vec<f64> = Vec::new();
    if decades >= 3 {
        // Every n-th power of ten so that there are at most ~target + 2 ticks.
        let every = ((decades as usize).div_ceil(target + 2)).max(1) as i64;
        let mut d = d0;
        while d <= d1 {
            values.push(10f64.powi(d as i32));
            d += every;
        }
    } else {
        for mults in [
            &[1.0, 2.0, 5.0][..],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..],
        ] {
            values.clear();
            for d in (d0 - 1)..=(d1 + 1) {
                for &m in mults {
                    let v = m * 10f64.powi(d as i32);
                    if in_range(v) {
                        values.push(v);
                    }
                }
            }
            if values.len() >= 3 {
                break;
            }
        }
        if values.len() < 2 {
            return linear(lo, hi, target)
                .into_iter()
                .filter(|t| t.value > 0.0)
                .collect();
        }
    }
    values
        .into_iter()
        .map(|value| Tick {
            value,
            label: format_log(value),
        })
        .collect()
}

/// Formats a tick on a linear axis with step `step`; `max_abs` is the largest |tick| on
/// the axis and decides the notation (plain, `k`/`M`/`G` suffix, or scientific).
pub fn format_linear(v: f64, step: f64, max_abs: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if !(step.is_finite() && step > 0.0 && max_abs.is_finite()) {
        return format_sig(v);
    }
    if v.abs() < step * 1e-6 || v == 0.0 {
        return "0".to_string();
    }
    let k = (step.log10() + 1e-9).floor() as i32;
    if !(1e-3..1e12).contains(&max_abs) {
        return format_sci(v, decimals(exponent(max_abs) - k));
    }
    if max_abs >= 1e3 && k >= 1 {
        let (div, e, suffix) = suffix_for(max_abs);
        return clean(format!("{:.*}{suffix}", decimals(e - k), v / div));
    }
    clean(format!("{:.*}", decimals(-k), v))
}

/// Formats a tick on a log axis (a 1-9 multiple of a power of ten): `0.5`, `200`,
/// `2k`, `1M`, `1e-4`.
pub fn format_log(v: f64) -> String {
    if !v.is_finite() || v <= 0.0 {
        return format!("{v}");
    }
    let e = exponent(v);
    if !(-2..12).contains(&e) {
        return format_sci(v, 0);
    }
    if e >= 3 {
        let (div, _, suffix) = suffix_for(v);
        return clean(format!("{:.0}{suffix}", v / div));
    }
    clean(format!("{:.*}", decimals(-e), v))
}

/// A digit count for `format!`, clamped to what an `f64` can carry.
fn decimals(n: i32) -> usize {
    n.clamp(0, 17) as usize
}

/// Formats a value with about three significant digits: `99.9`, `5.12`, `1.23k`,
/// `0.0123`, `4.20e-5`. Used for bar values.
pub fn format_sig(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "n/a".to_string()
        } else {
            format!("{v}")
        };
    }
    if v == 0.0 {
        return "0".to_string();
    }
    // Round first so 999.96 becomes 1.00k rather than 1000.0.
    let e = exponent(v);
    let rounded = round_sig(v, 3);
    let e = exponent(rounded).max(e);
    if !(-3..12).contains(&e) {
        return format_sci(rounded, 2);
    }
    if e >= 3 {
        let (div, se, suffix) = suffix_for(rounded.abs());
        return clean(format!(
            "{:.*}{suffix}",
            decimals(2 - (e - se)),
            rounded / div
        ));
    }
    clean(format!("{:.*}", decimals(2 - e), rounded))
}

fn round_sig(v: f64, digits: i32) -> f64 {
    let e = exponent(v);
    let f = 10f64.powi(digits - 1 - e);
    let r = (v * f).round() / f;
    if r.is_finite() {
        r
    } else {
        v
    }
}

/// floor(log10(|v|)), robust to rounding (1e-4 gives -4).
fn exponent(v: f64) -> i32 {
    let a = v.abs();
    if !(a.is_finite() && a > 0.0) {
        return 0;
    }
    let mut e = a.log10().floor() as i32;
    // Correct an off-by-one from log10 rounding.
    if 10f64.powi(e + 1) <= a * (1.0 + 1e-12) {
        e += 1;
    } else if 10f64.powi(e) > a * (1.0 + 1e-12) {
        e -= 1;
    }
    e
}

/// Scientific notation with `decimals` mantissa decimals: `1e-4`, `2.5e-5`, `1.0e12`.
fn format_sci(v: f64, decimals: usize) -> String {
    let mut e = exponent(v);
    let mut m = v / 10f64.powi(e);
    let s = format!("{:.*}", decimals, m);
    if s.trim_start_matches('-').starts_with("10") {
        e += 1;
        m = v / 10f64.powi(e);
    }
    clean(format!("{:.*}e{e}", decimals, m))
}

/// Divisor, its exponent, and suffix for thousands (`k`), millions (`M`), billions (`G`).
fn suffix_for(max_abs: f64) -> (f64, i32, &'static str) {
    if max_abs >= 1e9 {
        (1e9, 9, "G")
    } else if max_abs >= 1e6 {
        (1e6, 6, "M")
    } else {
        (1e3, 3, "k")
    }
}

/// Turns `-0`, `-0.00` and the like into `0`.
fn clean(s: String) -> String {
    let digits = s.trim_start_matches('-');
    if s.starts_with('-') && digits.chars().all(|c| c == '0' || c == '.') {
        return digits.to_string();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(t: &[Tick]) -> Vec<&str> {
        t.iter().map(|t| t.label.as_str()).collect()
    }

    #[test]
    fn simple_ranges() {
        assert_eq!(
            labels(&linear(0.0, 1.0, 5)),
            ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]
        );
        assert_eq!(
            labels(&linear(0.0, 10_000.0, 5)),
            ["0", "2k", "4k", "6k", "8k", "10k"]
        );
        assert_eq!(labels(&linear(0.0, 0.1, 2)), ["0", "0.05", "0.10"]);
        assert_eq!(labels(&linear(0.0, 3e-4, 3)), ["0", "1e-4", "2e-4", "3e-4"]);
        assert_eq!(
            labels(&linear(0.0, 2e-4, 4)),
            ["0", "5.0e-5", "1.0e-4", "1.5e-4", "2.0e-4"]
        );
        assert_eq!(
            labels(&linear(0.0, 2500.0, 5)),
            ["0", "0.5k", "1.0k", "1.5k", "2.0k", "2.5k"]
        );
        assert_eq!(
            labels(&linear(-1.0, 1.0, 4)),
            ["-1.0", "-0.5", "0", "0.5", "1.0"]
        );
        assert_eq!(labels(&linear(0.1, 0.3, 2)), ["0.1", "0.2", "0.3"]);
    }

    #[test]
    fn log_ranges() {
        assert_eq!(
            labels(&log(1e-5, 1e-2, 5)),
            ["1e-5", "1e-4", "1e-3", "0.01"]
        );
        assert_eq!(
            labels(&log(0.3, 20.0, 5)),
            ["0.5", "1", "2", "5", "10", "20"]
        );
        assert_eq!(
            labels(&log(1.0, 1e6, 5)),
            ["1", "10", "100", "1k", "10k", "100k", "1M"]
        );
        let wide = log(1.0, 1e30, 5);
        assert!((3..=8).contains(&wide.len()), "{wide:?}");
        let narrow = log(1.1, 1.3, 4);
        assert!(narrow.len() >= 2, "{narrow:?}");
        assert!(log(0.0, 1.0, 5).is_empty());
        assert!(log(-1.0, 1.0, 5).is_empty());
    }

    #[test]
    fn invalid_ranges_give_no_ticks() {
        assert!(linear(1.0, 1.0, 5).is_empty());
        assert!(linear(2.0, 1.0, 5).is_empty());
        assert!(linear(f64::NAN, 1.0, 5).is_empty());
        assert!(linear(0.0, f64::INFINITY, 5).is_empty());
        assert!(linear(-f64::MAX, f64::MAX, 5).is_empty());
    }

    #[test]
    fn significant_digit_format() {
        assert_eq!(format_sig(99.9), "99.9");
        assert_eq!(format_sig(27.1), "27.1");
        assert_eq!(format_sig(5.123), "5.12");
        assert_eq!(format_sig(1234.0), "1.23k");
        assert_eq!(format_sig(999.96), "1.00k");
        assert_eq!(format_sig(0.01234), "0.0123");
        assert_eq!(format_sig(4.2e-5), "4.20e-5");
        assert_eq!(format_sig(-3.0), "-3.00");
        assert_eq!(format_sig(2.5e6), "2.50M");
        assert_eq!(format_sig(f64::NAN), "n/a");
        assert_eq!(format_sig(0.0), "0");
    }
}
