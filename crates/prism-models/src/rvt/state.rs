//! Recurrent state of RVT: (h, c) of the 4 stage LSTMs.

use burn::tensor::{Device, Tensor};

use super::config::RvtConfig;

/// LSTM states of the 4 stages, each `[N, C_s, H/stride_s, W/stride_s]` (strides 4, 8, 16, 32).
#[derive(Debug, Clone)]
pub struct RvtState {
    /// Hidden states h1..h4.
    pub h: [Tensor<4>; 4],
    /// Cell states c1..c4.
    pub c: [Tensor<4>; 4],
}

impl RvtState {
    /// Zero state for a fresh sequence of `batch` inputs of size `input_hw` (padded).
    pub fn zeros(config: &RvtConfig, batch: usize, input_hw: [usize; 2], device: &Device) -> Self {
        let dims = config.stage_dims();
        let make = |s: usize| {
            let stride = 4 << s;
            Tensor::zeros(
                [batch, dims[s], input_hw[0] / stride, input_hw[1] / stride],
                device,
            )
        };
        Self {
            h: core::array::from_fn(make),
            c: core::array::from_fn(make),
        }
    }

    /// The 8 tensors in the reference order h1, c1, h2, c2, h3, c3, h4, c4.
    pub fn into_flat(self) -> Vec<Tensor<4>> {
        let [h1, h2, h3, h4] = self.h;
        let [c1, c2, c3, c4] = self.c;
        vec![h1, c1, h2, c2, h3, c3, h4, c4]
    }

    /// Inverse of [`into_flat`](Self::into_flat); `None` unless exactly 8 tensors are given.
    pub fn from_flat(tensors: Vec<Tensor<4>>) -> Option<Self> {
        let [h1, c1, h2, c2, h3, c3, h4, c4]: [Tensor<4>; 8] = tensors.try_into().ok()?;
        Some(Self {
            h: [h1, h2, h3, h4],
            c: [c1, c2, c3, c4],
        })
    }

    /// Selects batch entries `[start, start + len)` of every state tensor.
    pub fn narrow_batch(&self, start: usize, len: usize) -> Self {
        Self {
            h: self.h.clone().map(|t| t.narrow(0, start, len)),
            c: self.c.clone().map(|t| t.narrow(0, start, len)),
        }
    }

    /// Zeroes the state of the batch entries where `keep` is false (a sequence starts there) and
    /// keeps the others; `keep` has one flag per batch entry.
    pub fn reset_where(self, keep: &[bool]) -> Self {
        let device = self.h[0].device();
        let mask: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        let mask =
            Tensor::<1>::from_data(burn::tensor::TensorData::new(mask, [keep.len()]), &device)
                .reshape([keep.len(), 1, 1, 1]);
        Self {
            h: self.h.map(|t| t * mask.clone()),
            c: self.c.map(|t| t * mask.clone()),
        }
    }

    /// Detached copy (stops gradients at a truncated-BPTT boundary).
    pub fn detach(self) -> Self {
        self.map(Tensor::detach)
    }

    /// Every state tensor passed through `f` (a cast, a detach).
    pub fn map(self, mut f: impl FnMut(Tensor<4>) -> Tensor<4>) -> Self {
        Self {
            h: self.h.map(&mut f),
            c: self.c.map(&mut f),
        }
    }
}
