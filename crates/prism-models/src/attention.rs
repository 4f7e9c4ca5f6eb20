//! Pluggable attention (`model.attention`): one token mixer, seven ways to let the tokens of a
//! feature map attend to each other, for RVT's blocks and MiT's.
//!
//! Every kind projects queries, keys and values with linear layers, runs multi-head attention
//! and projects back; they differ in which keys a query sees and how:
//!
//! | kind | keys of a query | cost in tokens N |
//! |---|---|---|
//! | `full` | every token of the map | N² |
//! | `block` | its window (`window` tokens, MaxViT's block attention; a side that does not divide the map shrinks to their gcd) | N · window |
//! | `grid` | its grid cell (a dilated window spanning the map, MaxViT's grid attention) | N · window |
//! | `sr` | the map reduced by a stride-R convolution (PVT / SegFormer) | N² / R² |
//! | `sliding` | its `kernel` x `kernel` neighbourhood (NAT), zero-padded and masked at borders | N · kernel² |
//! | `linear` | every token, through the kernel feature map elu + 1 (Katharopoulos et al. 2020) | N · d² |
//! | `latent` | every token, keys and values decompressed from a low-rank latent (DeepSeek's MLA) | N² |
//!
//! Each is written with the operations tract and ONNX Runtime run well (MatMul, Softmax,
//! Reshape / Transpose, Pad and Slice for the sliding window, Exp / Relu / Min for the feature
//! map); no gather, no loop.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::kernels::{conv2d, layer_norm, softmax};
use crate::rvt::partition::{partition, reverse, PartitionType};

/// The kind of attention (`model.attention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionKind {
    Full,
    Block,
    Grid,
    Sr,
    Sliding,
    Linear,
    Latent,
}

impl AttentionKind {
    /// Every kind, in the order tables list them.
    pub const ALL: [Self; 7] = [
        Self::Full,
        Self::Block,
        Self::Grid,
        Self::Sr,
        Self::Sliding,
        Self::Linear,
        Self::Latent,
    ];

    /// The name a card uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Block => "block",
            Self::Grid => "grid",
            Self::Sr => "sr",
            Self::Sliding => "sliding",
            Self::Linear => "linear",
            Self::Latent => "latent",
        }
    }
}

/// Settings of a [`TokenMixer`].
#[derive(Config, Debug)]
pub struct TokenMixerConfig {
    /// Channels C.
    pub dim: usize,
    /// Attention heads (C must be a multiple).
    pub num_heads: usize,
    pub kind: AttentionKind,
    /// `block` / `grid`: tokens per window, or grid cells per axis.
    #[config(default = "[8, 8]")]
    pub window: [usize; 2],
    /// `sr`: the stride of the key / value reduction.
    #[config(default = 2)]
    pub sr_ratio: usize,
    /// `sliding`: the neighbourhood's side (odd).
    #[config(default = 5)]
    pub kernel: usize,
    /// `latent`: the latent's width is C / this.
    #[config(default = 4)]
    pub latent_ratio: usize,
}

/// Multi-head attention of the configured [`AttentionKind`] over tokens `[B, N, C]` of an
/// `[H, W]` map (row-major).
#[derive(Module, Debug)]
pub struct TokenMixer {
    /// Queries, C -> C.
    pub q: Linear,
    /// Keys and values, C -> 2C (every kind but `latent`).
    pub kv: Option<Linear>,
    /// `latent`: C -> C / latent_ratio, the shared compression of keys and values.
    pub kv_down: Option<Linear>,
    /// `latent`: the latent's norm.
    pub kv_norm: Option<LayerNorm>,
    /// `latent`: latent -> 2C, keys and values.
    pub kv_up: Option<Linear>,
    /// `sr`: stride-R convolution of the map before the key / value projection.
    pub sr: Option<Conv2d>,
    /// `sr`: LayerNorm after the reduction.
    pub sr_norm: Option<LayerNorm>,
    /// Output projection, C -> C.
    pub proj: Linear,
    #[module(skip)]
    pub kind: AttentionKind,
    pub num_heads: usize,
    #[module(skip)]
    pub window: [usize; 2],
    pub kernel: usize,
}

impl TokenMixerConfig {
    /// Builds the mixer on `device`. Panics when C is not a multiple of the heads, the sliding
    /// kernel is even or a ratio is zero (configurations a card check refuses first).
    pub fn init(&self, device: &Device) -> TokenMixer {
        let (dim, kind) = (self.dim, self.kind);
        assert!(
            self.num_heads > 0 && dim % self.num_heads == 0,
            "dim {dim} is not a multiple of {} heads",
            self.num_heads
        );
        assert!(self.kernel % 2 == 1, "the sliding kernel must be odd");
        assert!(self.sr_ratio > 0 && self.latent_ratio > 0);
        let latent = (dim / self.latent_ratio).max(1);
        let is = |k: AttentionKind| kind == k;
        TokenMixer {
            q: LinearConfig::new(dim, dim).init(device),
            kv: (!is(AttentionKind::Latent)).then(|| LinearConfig::new(dim, 2 * dim).init(device)),
            kv_down: is(AttentionKind::Latent).then(|| LinearConfig::new(dim, latent).init(device)),
            kv_norm: is(AttentionKind::Latent).then(|| LayerNormConfig::new(latent).init(device)),
            kv_up: is(AttentionKind::Latent)
                .then(|| LinearConfig::new(latent, 2 * dim).init(device)),
            sr: (is(AttentionKind::Sr) && self.sr_ratio > 1).then(|| {
                Conv2dConfig::new([dim, dim], [self.sr_ratio, self.sr_ratio])
                    .with_stride([self.sr_ratio, self.sr_ratio])
                    .init(device)
            }),
            sr_norm: (is(AttentionKind::Sr) && self.sr_ratio > 1)
                .then(|| LayerNormConfig::new(dim).init(device)),
            proj: LinearConfig::new(dim, dim).init(device),
            kind,
            num_heads: self.num_heads,
            window: self.window,
            kernel: self.kernel,
        }
    }
}

/// Softmax attention per head: `q [G, heads, n, d]`, `k` and `v` `[G, heads, m, d]`.
fn softmax_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let d = q.dims()[3];
    let scale = (d as f64).powf(-0.5);
    softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3).matmul(v)
}

/// The linear-attention feature map `elu(x) + 1 = relu(x) + exp(min(x, 0))`, positive.
fn feature_map(x: Tensor<4>) -> Tensor<4> {
    relu(x.clone()) + x.clamp_max(0.0).exp()
}

impl TokenMixer {
    /// `[B, N, C]` tokens of an `[h, w]` map -> `[B, N, C]`.
    pub fn forward(&self, x: Tensor<3>, [h, w]: [usize; 2]) -> Tensor<3> {
        let [b, n, c] = x.dims();
        assert_eq!(n, h * w, "{n} tokens for a {h}x{w} map");
        let nh = self.num_heads;
        let dh = c / nh;
        let q = self.q.forward(x.clone());
        let (k, v) = self.keys_and_values(x, [h, w]);
        // [B, m, C] -> [B, heads, m, d].
        let heads = |t: Tensor<3>| {
            let m = t.dims()[1];
            t.reshape([b, m, nh, dh]).swap_dims(1, 2)
        };
        let merge = |t: Tensor<4>| t.swap_dims(1, 2).reshape([b, n, c]);
        let out = match self.kind {
            AttentionKind::Full | AttentionKind::Sr | AttentionKind::Latent => {
                merge(softmax_attention(heads(q), heads(k), heads(v)))
            }
            AttentionKind::Block | AttentionKind::Grid => {
                self.partitioned(q, k, v, [b, h, w], self.window)
            }
            AttentionKind::Linear => {
                let (q, k, v) = (feature_map(heads(q)), feature_map(heads(k)), heads(v));
                // Σ_m φ(k_m) v_mᵀ and Σ_m φ(k_m): the whole map summarised in d x d per head.
                let summary = k.clone().swap_dims(2, 3).matmul(v);
                let normaliser = q.clone().matmul(k.sum_dim(2).swap_dims(2, 3));
                merge(q.matmul(summary) / normaliser.add_scalar(1e-6))
            }
            AttentionKind::Sliding => self.sliding(q, k, v, [b, h, w]),
        };
        self.proj.forward(out)
    }

    /// Keys and values `[B, m, C]` each: of every token, of the reduced map (`sr`), or
    /// decompressed from the latent (`latent`).
    fn keys_and_values(&self, x: Tensor<3>, [h, w]: [usize; 2]) -> (Tensor<3>, Tensor<3>) {
        let [b, _, c] = x.dims();
        let source = match (&self.sr, &self.sr_norm) {
            (Some(sr), Some(norm)) => {
                let map = conv2d(sr, x.swap_dims(1, 2).reshape([b, c, h, w]));
                let [_, _, hr, wr] = map.dims();
                layer_norm(norm, map.reshape([b, c, hr * wr]).swap_dims(1, 2))
            }
            _ => x,
        };
        let kv = match (&self.kv, &self.kv_down, &self.kv_norm, &self.kv_up) {
            (Some(kv), ..) => kv.forward(source),
            (None, Some(down), Some(norm), Some(up)) => {
                up.forward(layer_norm(norm, down.forward(source)))
            }
            _ => unreachable_layers(),
        };
        (kv.clone().narrow(2, 0, c), kv.narrow(2, c, c))
    }

    /// `block` / `grid`: attention inside each window (or grid cell) of size `p`.
    fn partitioned(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        [b, h, w]: [usize; 3],
        p: [usize; 2],
    ) -> Tensor<3> {
        let c = q.dims()[2];
        let (nh, dh) = (self.num_heads, c / self.num_heads);
        // A window that does not divide the map shrinks to the largest side that divides both
        // (MiT runs at any input size; RVT's cards are checked to divide).
        let p = [gcd(h, p[0]), gcd(w, p[1])];
        let kind = if self.kind == AttentionKind::Grid {
            PartitionType::Grid
        } else {
            PartitionType::Window
        };
        let groups = |t: Tensor<3>| {
            let g = partition(t.reshape([b, h, w, c]), kind, p);
            let [bg, m, _] = g.dims();
            g.reshape([bg, m, nh, dh]).swap_dims(1, 2)
        };
        let out = softmax_attention(groups(q), groups(k), groups(v));
        let [bg, _, m, _] = out.dims();
        let out = out.swap_dims(1, 2).reshape([bg, m, c]);
        reverse(out, kind, p, b, h, w).reshape([b, h * w, c])
    }

    /// `sliding`: each token attends to its `kernel` x `kernel` neighbourhood. Keys and values
    /// are zero-padded and read at every offset; the padded positions get -1e9 before the
    /// softmax, so a border token attends only to the neighbours it has.
    fn sliding(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        [b, h, w]: [usize; 3],
    ) -> Tensor<3> {
        let c = q.dims()[2];
        let (nh, dh) = (self.num_heads, c / self.num_heads);
        let (size, half) = (self.kernel, self.kernel / 2);
        // [B, N, C] -> [B, heads, d, h, w].
        let map = |t: Tensor<3>| t.reshape([b, h, w, nh, dh]).permute([0, 3, 4, 1, 2]);
        let (q, k, v) = (map(q), map(k), map(v));
        let pad = |t: Tensor<5>| t.pad((half, half, half, half), 0.0);
        let (kp, vp) = (pad(k), pad(v));
        // 1 inside the map, 0 in the padding: derived from q, so it stays a graph constant.
        let inside = pad(q.clone().narrow(2, 0, 1).mul_scalar(0.0).add_scalar(1.0));
        let scale = (dh as f64).powf(-0.5);
        let mut logits = Vec::with_capacity(size * size);
        for dy in 0..size {
            for dx in 0..size {
                let at = |t: &Tensor<5>| t.clone().narrow(3, dy, h).narrow(4, dx, w);
                let score = (q.clone() * at(&kp)).sum_dim(2).mul_scalar(scale);
                let masked = at(&inside).sub_scalar(1.0).mul_scalar(1e9);
                logits.push(score + masked);
            }
        }
        // [B, heads, kernel², h, w], softmax over the neighbourhood.
        let weights = softmax(Tensor::cat(logits, 2), 2);
        let mut out: Option<Tensor<5>> = None;
        for dy in 0..size {
            for dx in 0..size {
                let o = dy * size + dx;
                let term =
                    weights.clone().narrow(2, o, 1) * vp.clone().narrow(3, dy, h).narrow(4, dx, w);
                out = Some(match out {
                    Some(acc) => acc + term,
                    None => term,
                });
            }
        }
        let out = out.unwrap_or_else(|| unreachable_layers());
        // [B, heads, d, h, w] -> [B, N, C].
        out.permute([0, 3, 4, 1, 2]).reshape([b, h * w, c])
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cold]
fn unreachable_layers() -> ! {
    // `TokenMixerConfig::init` builds exactly the layers its kind uses.
    unreachable!("a token mixer without the layers of its kind")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;

    fn tokens(b: usize, n: usize, c: usize, device: &Device) -> Tensor<3> {
        Tensor::random([b, n, c], Distribution::Normal(0.0, 1.0), device)
    }

    fn max_rel(want: &Tensor<3>, got: &Tensor<3>) -> f32 {
        let scale: f32 = want.clone().abs().max().into_scalar();
        let err: f32 = (want.clone() - got.clone()).abs().max().into_scalar();
        err / scale
    }

    /// A mixer of `kind` with `full`'s query, key / value and output weights.
    fn like(full: &TokenMixer, config: TokenMixerConfig, device: &Device) -> TokenMixer {
        let mut m = config.init(device);
        m.q = full.q.clone();
        m.kv = full.kv.clone();
        m.proj = full.proj.clone();
        m
    }

    /// Each restricted kind, widened until every token sees every other, is full attention:
    /// the partitions, the sliding window's padding and mask, and the `sr` path without a
    /// reduction are the identity's rearrangements.
    #[test]
    fn widened_kinds_equal_full_attention() {
        let device = Device::flex();
        let (b, h, w, c) = (2, 4, 6, 16);
        let x = tokens(b, h * w, c, &device);
        let full = TokenMixerConfig::new(c, 2, AttentionKind::Full).init(&device);
        let want = full.forward(x.clone(), [h, w]);
        for config in [
            TokenMixerConfig::new(c, 2, AttentionKind::Block).with_window([h, w]),
            TokenMixerConfig::new(c, 2, AttentionKind::Grid).with_window([h, w]),
            TokenMixerConfig::new(c, 2, AttentionKind::Sr).with_sr_ratio(1),
            TokenMixerConfig::new(c, 2, AttentionKind::Sliding).with_kernel(11),
        ] {
            let kind = config.kind;
            let got = like(&full, config, &device).forward(x.clone(), [h, w]);
            let err = max_rel(&want, &got);
            assert!(err < 1e-5, "{kind:?}: {err}");
        }
    }

    /// A sliding window sees its neighbourhood only; a block its window only.
    #[test]
    fn local_kinds_ignore_tokens_outside_their_reach() {
        let device = Device::flex();
        let (h, w, c) = (6, 6, 8);
        let x = tokens(1, h * w, c, &device);
        // Change the token at (5, 5): (0, 0) is 5 rows away, outside a 5x5 neighbourhood and
        // outside a 3x3 block; (4, 4) is inside both reaches of the sliding window.
        let far = x.clone().slice_assign(
            [0..1, (h * w - 1)..(h * w), 0..c],
            Tensor::ones([1, 1, c], &device).mul_scalar(5.0),
        );
        for (config, near) in [
            (
                TokenMixerConfig::new(c, 2, AttentionKind::Sliding).with_kernel(5),
                4 * w + 4,
            ),
            (
                TokenMixerConfig::new(c, 2, AttentionKind::Block).with_window([3, 3]),
                4 * w + 4,
            ),
        ] {
            let kind = config.kind;
            let m = config.init(&device);
            let (a, b) = (m.forward(x.clone(), [h, w]), m.forward(far.clone(), [h, w]));
            let at = |t: &Tensor<3>, i: usize| t.clone().narrow(1, i, 1);
            let same: f32 = (at(&a, 0) - at(&b, 0)).abs().max().into_scalar();
            assert_eq!(same, 0.0, "{kind:?}: token (0, 0) saw (5, 5)");
            let moved: f32 = (at(&a, near) - at(&b, near)).abs().max().into_scalar();
            assert!(moved > 1e-4, "{kind:?}: token (4, 4) did not see (5, 5)");
        }
    }

    /// Linear attention against its formula, query by query:
    /// `out_i = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j)` with `φ = elu + 1`.
    #[test]
    fn linear_attention_follows_its_formula() {
        let device = Device::flex();
        let (n, c) = (6, 4);
        let x = tokens(1, n, c, &device);
        let m = TokenMixerConfig::new(c, 1, AttentionKind::Linear).init(&device);
        let got = m.forward(x.clone(), [2, 3]);
        let vec = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
        let q = vec(m.q.forward(x.clone()));
        let kv = vec(m.kv.as_ref().unwrap().forward(x));
        let phi = |v: f32| if v > 0.0 { v + 1.0 } else { v.exp() };
        let mut mixed = vec![0f32; n * c];
        for i in 0..n {
            let mut den = 0.0;
            for j in 0..n {
                let s: f32 = (0..c)
                    .map(|d| phi(q[i * c + d]) * phi(kv[j * 2 * c + d]))
                    .sum();
                den += s;
                for d in 0..c {
                    mixed[i * c + d] += s * kv[j * 2 * c + c + d];
                }
            }
            for d in 0..c {
                mixed[i * c + d] /= den;
            }
        }
        let mixed =
            Tensor::<3>::from_data(burn::tensor::TensorData::new(mixed, [1, n, c]), &device);
        let want = m.proj.forward(mixed);
        let err = max_rel(&want, &got);
        assert!(err < 1e-5, "{err}");
    }

    /// The latent kind compresses keys and values: fewer parameters than full attention.
    #[test]
    fn latent_attention_has_fewer_parameters() {
        let device = Device::flex();
        let count = |kind| {
            crate::rvt::params::count_params(&TokenMixerConfig::new(64, 2, kind).init(&device))
        };
        // q, proj: 2 (C² + C); kv: 2C² + 2C; latent: C·C/4 + C/4 (down) + C/2 (norm) + C/4 · 2C + 2C (up).
        assert_eq!(count(AttentionKind::Full), 4 * 64 * 64 + 4 * 64);
        assert_eq!(
            count(AttentionKind::Latent),
            2 * (64 * 64 + 64) + 64 * 16 + 16 + 32 + 16 * 128 + 128
        );
    }
}
