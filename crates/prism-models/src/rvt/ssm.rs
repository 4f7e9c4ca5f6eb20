//! A diagonal state-space memory cell (S4D / S5 style) whose discretization follows the real
//! length of each window, as an alternative to RVT's per-pixel LSTM (`model.memory = "ssm"`).
//!
//! Per pixel and per channel k the cell holds one complex mode `s_k` with a continuous-time
//! pole `A_k = -exp(log_decay_k) + i·frequency_k` (units 1/s and rad/s). A window of length `dt`
//! seconds advances it by the exact zero-order-hold solution for an input held over the window:
//!
//! ```text
//! Ā = exp(A·dt)                      (decay and rotation over dt)
//! s' = Ā ⊙ s + (1 - Ā) ⊙ (B x)        (B: 1x1 conv C -> 2C, real and imaginary parts)
//! y  = (Cout [Re s', Im s']) ⊙ sigmoid(G x) + D ⊙ x
//! ```
//!
//! `(1 - Ā)` is ZOH's `(Ā - 1) A⁻¹ B` with the input matrix scaled by `-A`, so the steady state
//! under a constant input is `B x` for every mode, fast or slow. Because the solution is exact,
//! two windows of 25 ms with the same input leave the same state as one window of 50 ms: a model
//! trained at 50 ms windows runs at 20 or 100 ms with the dynamics it learned, instead of the
//! per-step recurrence of an LSTM (or an SSM discretized with `dt = 1 / N`, the failure in
//! `ssm-baseline-analysis.md`), whose time constants are counted in windows.
//!
//! The state is two real tensors, `Re s` and `Im s`, carried where the LSTM carries `h` and `c`,
//! so the exported model keeps eight state tensors and one more input: the window duration.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};

use crate::kernels::{conv2d, sigmoid};

/// The cell; [`SsmCellConfig::init`] builds it.
#[derive(Module, Debug)]
pub struct SsmCell {
    /// `B`: 1x1 conv C -> 2C, the real parts of `B x` then the imaginary parts.
    pub input_proj: Conv2d,
    /// `Cout`: 1x1 conv 2C -> C over `[Re s, Im s]`.
    pub output_proj: Conv2d,
    /// `G`: 1x1 conv C -> C, a sigmoid gate on the read-out computed from the input.
    pub gate: Conv2d,
    /// `ln(-Re A)` per mode, `Re A` in 1/s.
    pub log_decay: Param<Tensor<1>>,
    /// `Im A` per mode, rad/s.
    pub frequency: Param<Tensor<1>>,
    /// `D`: the input's direct path per channel.
    pub skip: Param<Tensor<1>>,
    /// Channels C (= modes).
    pub dim: usize,
    /// The window length in seconds used when a caller gives none (the card's `window_ms`).
    pub default_dt_s: f64,
}

/// Settings of an [`SsmCell`].
#[derive(Config, Debug)]
pub struct SsmCellConfig {
    /// Channels C of the input, the output and the state.
    pub dim: usize,
    /// Shortest time constant `1 / -Re A` at initialisation, seconds.
    #[config(default = 0.01)]
    pub min_time_constant_s: f64,
    /// Longest time constant at initialisation, seconds.
    #[config(default = 2.0)]
    pub max_time_constant_s: f64,
    /// Window length in seconds when the caller gives none.
    #[config(default = 0.05)]
    pub default_dt_s: f64,
}

impl SsmCellConfig {
    /// Builds the cell on `device`: time constants spaced log-uniformly between the two bounds
    /// (S4D's `dt_min` / `dt_max` idea in seconds), no rotation, `D = 1`.
    pub fn init(&self, device: &Device) -> SsmCell {
        let dim = self.dim;
        let (lo, hi) = (self.min_time_constant_s.ln(), self.max_time_constant_s.ln());
        let log_decay: Vec<f32> = (0..dim)
            .map(|k| {
                let t = if dim > 1 {
                    k as f64 / (dim - 1) as f64
                } else {
                    0.5
                };
                -(lo + t * (hi - lo)) as f32
            })
            .collect();
        let vector = |values: Vec<f32>| {
            Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(values, [dim]),
                device,
            ))
        };
        SsmCell {
            input_proj: Conv2dConfig::new([dim, 2 * dim], [1, 1]).init(device),
            output_proj: Conv2dConfig::new([2 * dim, dim], [1, 1]).init(device),
            gate: Conv2dConfig::new([dim, dim], [1, 1]).init(device),
            log_decay: vector(log_decay),
            frequency: vector(vec![0.0; dim]),
            skip: vector(vec![1.0; dim]),
            dim,
            default_dt_s: self.default_dt_s,
        }
    }
}

impl SsmCell {
    /// The discrete pole `Ā = exp(A·dt)` for durations `dt_s: [N, 1]` (seconds), as its real
    /// and imaginary parts `[N, C, 1, 1]`. A negative duration counts as zero (the state is
    /// kept): time running backwards must not make the state grow without bound.
    pub fn discrete_pole(&self, dt_s: Tensor<2>) -> (Tensor<4>, Tensor<4>) {
        let c = self.dim;
        let [n, _] = dt_s.dims();
        let dt = dt_s.clamp_min(0.0).reshape([n, 1, 1, 1]);
        let decay = self.log_decay.val().exp().reshape([1, c, 1, 1]);
        let frequency = self.frequency.val().reshape([1, c, 1, 1]);
        let magnitude = (decay.neg() * dt.clone()).exp();
        let phase = frequency * dt;
        (
            magnitude.clone() * phase.clone().cos(),
            magnitude * phase.sin(),
        )
    }

    /// One window: input `x`, state `(re, im)`, all `[N, C, H, W]`, and the window's duration
    /// `dt_s: [N, 1]` in seconds -> `(y, re', im')`.
    pub fn forward(
        &self,
        x: Tensor<4>,
        re: Tensor<4>,
        im: Tensor<4>,
        dt_s: Tensor<2>,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let c = self.dim;
        let (pole_re, pole_im) = self.discrete_pole(dt_s);
        // (1 - Ā) ⊙ (B x), complex.
        let bx = conv2d(&self.input_proj, x.clone());
        let (u_re, u_im) = (bx.clone().narrow(1, 0, c), bx.narrow(1, c, c));
        let (g_re, g_im) = (pole_re.clone().neg() + 1.0, pole_im.clone().neg());
        let in_re = g_re.clone() * u_re.clone() - g_im.clone() * u_im.clone();
        let in_im = g_re * u_im + g_im * u_re;
        // Ā ⊙ s + input, complex.
        let next_re = pole_re.clone() * re.clone() - pole_im.clone() * im.clone() + in_re;
        let next_im = pole_re * im + pole_im * re + in_im;
        let read = conv2d(
            &self.output_proj,
            Tensor::cat(vec![next_re.clone(), next_im.clone()], 1),
        );
        let skip = self.skip.val().reshape([1, c, 1, 1]);
        let y = read * sigmoid(conv2d(&self.gate, x.clone())) + x * skip;
        (y, next_re, next_im)
    }

    /// `dt_s` of [`Self::forward`] filled with the default window length for a batch of `n`.
    pub fn default_dt(&self, n: usize, device: &Device) -> Tensor<2> {
        Tensor::full([n, 1], self.default_dt_s, device)
    }
}
