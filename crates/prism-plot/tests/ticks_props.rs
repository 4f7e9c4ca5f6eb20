//! Properties of tick generation and tick labels.

use prism_plot::ticks::{self, Tick};
use proptest::prelude::*;

/// Reads a label back: plain decimals, `k`/`M`/`G` suffixes, or scientific notation
/// (NaN when unparsable, which fails the comparisons below).
fn parse(label: &str) -> f64 {
    let (num, mult) = match label.chars().last() {
        Some('k') => (&label[..label.len() - 1], 1e3),
        Some('M') => (&label[..label.len() - 1], 1e6),
        Some('G') => (&label[..label.len() - 1], 1e9),
        _ => (label, 1.0),
    };
    num.parse::<f64>().map_or(f64::NAN, |v| v * mult)
}

/// 1, 2 or 5 times a power of ten, up to `rel` relative error (steps measured from tick
/// values far from zero carry the values' rounding).
fn is_nice(step: f64, rel: f64) -> bool {
    let e = step.log10().floor();
    let m = step / 10f64.powf(e);
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|n| (m - n).abs() <= n * rel)
}

fn check_common(t: &[Tick], lo: f64, hi: f64) {
    let tol = (hi - lo) * 1e-6;
    for w in t.windows(2) {
        assert!(w[0].value < w[1].value, "not increasing: {t:?}");
    }
    for tick in t {
        assert!(
            tick.value >= lo - tol && tick.value <= hi + tol,
            "{} outside [{lo}, {hi}]",
            tick.value
        );
        assert!(!tick.label.is_empty());
    }
    let mut labels: Vec<&str> = t.iter().map(|t| t.label.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), t.len(), "duplicate labels: {t:?}");
}

proptest! {
    #[test]
    fn linear_ticks_are_nice_inside_and_readable(
        lo in -1e6f64..1e6,
        mant in 1.0f64..10.0,
        exp in -3i32..7,
        target in 2usize..10,
    ) {
        let hi = lo + mant * 10f64.powi(exp);
        prop_assume!(hi > lo);
        let t = ticks::linear(lo, hi, target);
        prop_assert!(t.len() >= 2, "too few ticks for [{lo}, {hi}]: {t:?}");
        prop_assert!(t.len() <= (2 * target + 2).max(6), "too many ticks: {}", t.len());
        check_common(&t, lo, hi);
        let step = t[1].value - t[0].value;
        // Rounding of the tick values themselves: a few ulps of the largest magnitude.
        let noise = lo.abs().max(hi.abs()) * 1e-15;
        prop_assert!(is_nice(step, 1e-9 + noise / step), "step {step} is not 1-2-5");
        for w in t.windows(2) {
            prop_assert!(((w[1].value - w[0].value) - step).abs() <= step * 1e-9 + 2.0 * noise, "uneven ticks {t:?}");
        }
        for tick in &t {
            let back = parse(&tick.label);
            prop_assert!((back - tick.value).abs() <= step * 1e-3 + tick.value.abs() * 1e-12,
                "label {:?} reads {back}, tick is {}", tick.label, tick.value);
            prop_assert!(tick.label.len() <= 16, "label too long: {:?}", tick.label);
        }
    }

    #[test]
    fn log_ticks_are_positive_inside_and_readable(
        lo_exp in -12.0f64..12.0,
        decades in 0.05f64..30.0,
        target in 2usize..10,
    ) {
        let lo = 10f64.powf(lo_exp);
        let hi = 10f64.powf(lo_exp + decades);
        let t = ticks::log(lo, hi, target);
        prop_assert!(t.len() >= 2, "too few ticks for [{lo}, {hi}]: {t:?}");
        prop_assert!(t.len() <= (2 * target + 2).max(12), "too many ticks: {t:?}");
        check_common(&t, lo, hi);
        for tick in &t {
            prop_assert!(tick.value > 0.0);
            let back = parse(&tick.label);
            // Log labels are exact except for the linear fallback on very narrow ranges.
            let tol = if decades < 0.3 { (hi - lo) * 0.01 } else { tick.value * 1e-9 };
            prop_assert!((back - tick.value).abs() <= tol, "label {:?} reads {back}, tick is {}", tick.label, tick.value);
        }
    }

    #[test]
    fn bad_ranges_never_panic(lo in proptest::num::f64::ANY, hi in proptest::num::f64::ANY, target in 0usize..50) {
        let _ = ticks::linear(lo, hi, target);
        let _ = ticks::log(lo, hi, target);
        let _ = ticks::format_sig(lo);
        let _ = ticks::format_linear(lo, hi.abs(), lo.abs());
        let _ = ticks::format_log(lo);
    }
}
