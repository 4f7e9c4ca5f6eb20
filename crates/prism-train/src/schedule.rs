//! RVT's learning-rate schedule: PyTorch `OneCycleLR` with linear annealing, where RVT reads
//! `final_div_factor` as `max_lr / final_lr` (`modules/detection.py::configure_optimizers`).

use serde::{Deserialize, Serialize};

/// One-cycle schedule: linear warm-up from `max_lr / div_factor` to `max_lr` over the first
/// `pct_start` of the steps, then linear decay to `max_lr / final_div_factor`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OneCycle {
    pub max_lr: f64,
    pub total_steps: usize,
    pub pct_start: f64,
    pub div_factor: f64,
    pub final_div_factor: f64,
}

impl OneCycle {
    /// RVT's defaults: warm-up over 0.5% of the steps, start at max/20, end at max/10000.
    pub fn rvt(max_lr: f64, total_steps: usize) -> Self {
        Self {
            max_lr,
            total_steps,
            pct_start: 0.005,
            div_factor: 20.0,
            final_div_factor: 10_000.0,
        }
    }

    /// Learning rate at optimizer step `step` (0-based), as `OneCycleLR.get_lr` computes it.
    pub fn lr(&self, step: usize) -> f64 {
        let initial = self.max_lr / self.div_factor;
        let min_lr = self.max_lr / self.final_div_factor;
        let warm_end = self.pct_start * self.total_steps as f64 - 1.0;
        let last = self.total_steps.saturating_sub(1) as f64;
        let s = (step as f64).min(last);
        let lerp = |a: f64, b: f64, pct: f64| (b - a) * pct + a;
        if s <= warm_end {
            lerp(
                initial,
                self.max_lr,
                if warm_end > 0.0 { s / warm_end } else { 1.0 },
            )
        } else {
            let span = last - warm_end;
            lerp(
                self.max_lr,
                min_lr,
                if span > 0.0 {
                    (s - warm_end) / span
                } else {
                    1.0
                },
            )
        }
    }
}

impl OneCycle {
    /// The same warm-up, then cosine (instead of linear) decay from `max_lr` to the final rate,
    /// as `OneCycleLR(anneal_strategy='cos')`.
    pub fn cosine_lr(&self, step: usize) -> f64 {
        let min_lr = self.max_lr / self.final_div_factor;
        let warm_end = self.pct_start * self.total_steps as f64 - 1.0;
        let last = self.total_steps.saturating_sub(1) as f64;
        let s = (step as f64).min(last);
        if s <= warm_end {
            return self.lr(step);
        }
        let span = last - warm_end;
        let pct = if span > 0.0 {
            (s - warm_end) / span
        } else {
            1.0
        };
        min_lr + (self.max_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * pct).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_one_cycle_linear() {
        // torch.optim.lr_scheduler.OneCycleLR(max_lr=2e-4, total_steps=1000, pct_start=0.05,
        // div_factor=20, final_div_factor=10000/20, anneal_strategy='linear', cycle_momentum=False):
        // step 0 -> 1e-5, step 49 -> 2e-4, step 999 -> 2e-8.
        let s = OneCycle {
            pct_start: 0.05,
            ..OneCycle::rvt(2e-4, 1000)
        };
        assert!((s.lr(0) - 1e-5).abs() < 1e-12);
        assert!((s.lr(49) - 2e-4).abs() < 1e-12);
        assert!((s.lr(999) - 2e-8).abs() < 1e-14);
        // Halfway through the warm-up and the decay.
        assert!((s.lr(24) - (1e-5 + (2e-4 - 1e-5) * 24.0 / 49.0)).abs() < 1e-12);
        let mid: f64 = 49.0 + (999.0 - 49.0) / 2.0;
        assert!(
            (s.lr(mid as usize) - (2e-4 + (2e-8 - 2e-4) * ((mid.floor() - 49.0) / 950.0))).abs()
                < 1e-12
        );
        // Past the end it stays at the final rate.
        assert!((s.lr(5000) - 2e-8).abs() < 1e-14);
    }

    #[test]
    fn cosine_decay_ends_where_linear_does() {
        let s = OneCycle {
            pct_start: 0.1,
            ..OneCycle::rvt(1e-3, 100)
        };
        // Same warm-up (to step 9); halfway through the decay (step 54) cosine is at the
        // midpoint too.
        assert_eq!(s.cosine_lr(3), s.lr(3));
        let expect = 1e-7 + (1e-3 - 1e-7) * 0.5;
        assert!((s.cosine_lr(54) - expect).abs() < 1e-12);
        assert!((s.cosine_lr(99) - 1e-7).abs() < 1e-15);
        // Early in the decay cosine stays higher than linear.
        assert!(s.cosine_lr(20) > s.lr(20));
    }

    #[test]
    fn is_monotone_in_each_phase() {
        let s = OneCycle::rvt(1e-3, 10_000);
        let lrs: Vec<f64> = (0..10_000).map(|i| s.lr(i)).collect();
        let peak = lrs.iter().cloned().fold(0.0, f64::max);
        assert!((peak - 1e-3).abs() < 1e-12);
        let at = lrs.iter().position(|&v| v == peak).unwrap_or(0);
        assert!(lrs[..=at].windows(2).all(|w| w[0] <= w[1]));
        assert!(lrs[at..].windows(2).all(|w| w[0] >= w[1]));
    }
}
