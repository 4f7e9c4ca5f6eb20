//! MaxViT-style attention blocks (channels-last), as in RVT's `PartitionAttentionCl`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor};

use super::partition::PartitionType;
use crate::attention::{AttentionKind, TokenMixer, TokenMixerConfig};
use crate::kernels::{layer_norm, softmax};

/// Multi-head self-attention over token groups `[B', N, C]` (timm `AttentionCl` layout:
/// the qkv output is viewed as `[B', N, heads, 3 * dim_head]`, i.e. q, k, v interleaved per head).
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Linear C -> 3C with bias.
    pub qkv: Linear,
    /// Linear C -> C with bias.
    pub proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
    /// Channels per head.
    pub dim_head: usize,
}

/// Settings of a [`SelfAttention`] layer; [`SelfAttentionConfig::init`] builds it.
#[derive(Config, Debug)]
pub struct SelfAttentionConfig {
    /// Channels C (a multiple of `dim_head`).
    pub dim: usize,
    /// Channels per head.
    pub dim_head: usize,
}

impl SelfAttentionConfig {
    /// Builds the layer on `device`. Panics when `dim` is not a multiple of `dim_head` (a
    /// configuration RVT's presets never make).
    pub fn init(&self, device: &Device) -> SelfAttention {
        let (dim, dim_head) = (self.dim, self.dim_head);
        assert!(
            dim % dim_head == 0,
            "dim {dim} is not a multiple of dim_head {dim_head}"
        );
        SelfAttention {
            qkv: LinearConfig::new(dim, 3 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            num_heads: dim / dim_head,
            dim_head,
        }
    }
}

impl SelfAttention {
    /// Attention inside the window or grid partitions of a channels-last map, `[B, H, W, C]` ->
    /// `[B, H, W, C]`: the same numbers as partitioning the map, running the paper's multi-head
    /// attention on each group of tokens and reversing the partition (the test's reference),
    /// computed as [`Self::forward_tokens`] does it.
    pub fn forward(&self, x: Tensor<4>, kind: PartitionType, p: [usize; 2]) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        self.forward_tokens(x.reshape([b * h * w, c]), [b, h, w], kind, p)
            .reshape([b, h, w, c])
    }

    /// [`Self::forward`] on the map's tokens in row-major order, `[B * H * W, C]`
    /// for a map of size `[b, h, w]`.
    ///
    /// Written for export. The projections act on each token alone, so they run on the
    /// unpartitioned tokens (plain 2-D matrix products), and q, k and v are projected
    /// separately with the matching columns of the qkv weight (laid out head by head as
    /// (q, k, v, d), as timm's `AttentionCl` views them); each then needs a single transpose
    /// that does the partition and the head split at once, and one transpose does the head
    /// merge and the reverse partition. The paper's form on partitioned tokens needs a
    /// transpose for the partition, one for the heads, three strided slices and one for the
    /// reverse, each a pass over the activations.
    pub fn forward_tokens(
        &self,
        x: Tensor<2>,
        [b, h, w]: [usize; 3],
        kind: PartitionType,
        p: [usize; 2],
    ) -> Tensor<2> {
        let [_, c] = x.dims();
        assert!(
            h % p[0] == 0 && w % p[1] == 0,
            "feature map {h}x{w} is not divisible by the partition size {}x{}",
            p[0],
            p[1]
        );
        let (nh, dh) = (self.num_heads, self.dim_head);
        let (gh, gw) = (h / p[0], w / p[1]);
        let (groups, n) = (b * gh * gw * nh, p[0] * p[1]);
        let weight = self.qkv.weight.val();
        let bias = self.qkv.bias.as_ref().map(|b| b.val());
        // q (j = 0), k (1) or v (2) as [B * gh * gw * heads, p0 * p1, d].
        let project = |j: usize| {
            let w_j = weight
                .clone()
                .reshape([c, nh, 3, dh])
                .narrow(2, j, 1)
                .reshape([c, c]);
            let b_j = bias
                .clone()
                .map(|b| b.reshape([nh, 3, dh]).narrow(1, j, 1).reshape([c]));
            let t = linear(x.clone(), w_j, b_j);
            let t = match kind {
                PartitionType::Window => t
                    .reshape([b, gh, p[0], gw, p[1], nh, dh])
                    .permute([0, 1, 3, 5, 2, 4, 6]),
                PartitionType::Grid => t
                    .reshape([b, p[0], gh, p[1], gw, nh, dh])
                    .permute([0, 2, 4, 5, 1, 3, 6]),
            };
            t.reshape([groups, n, dh])
        };
        let (q, k, v) = (project(0), project(1), project(2));
        let scale = (dh as f64).powf(-0.5);
        let attn = softmax(q.matmul(k.swap_dims(1, 2)).mul_scalar(scale), 2);
        // [B * gh * gw * heads, p0 * p1, d] -> [B, gh, gw, head, p0, p1, d] -> tokens.
        let out = attn.matmul(v).reshape([b, gh, gw, nh, p[0], p[1], dh]);
        let out = match kind {
            PartitionType::Window => out.permute([0, 1, 4, 2, 5, 3, 6]),
            PartitionType::Grid => out.permute([0, 4, 1, 5, 2, 3, 6]),
        };
        self.proj.forward(out.reshape([b * h * w, c]))
    }
}

/// LayerScale: per-channel multiplication by `gamma` (last axis).
#[derive(Module, Debug)]
pub struct LayerScale {
    /// Scale per channel, initialised to `init_value`.
    pub gamma: Param<Tensor<1>>,
}

/// Settings of a [`LayerScale`]; [`LayerScaleConfig::init`] builds it.
#[derive(Config, Debug)]
pub struct LayerScaleConfig {
    /// Channels.
    pub dim: usize,
    /// Every gamma's initial value (RVT: 1e-5).
    #[config(default = 1e-5)]
    pub init_value: f64,
}

impl LayerScaleConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> LayerScale {
        LayerScale {
            gamma: Param::from_tensor(Tensor::ones([self.dim], device).mul_scalar(self.init_value)),
        }
    }
}

impl LayerScale {
    /// `x * gamma` broadcast over the last axis.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        x * self.gamma.val().unsqueeze::<D>()
    }
}

/// Non-gated MLP: Linear(C, rC) -> GELU (exact) -> Linear(rC, C).
#[derive(Module, Debug)]
pub struct Mlp {
    /// First projection (reference `mlp.net.0.0`).
    pub fc1: Linear,
    /// Second projection (reference `mlp.net.2`).
    pub fc2: Linear,
}

/// Settings of an [`Mlp`]; [`MlpConfig::init`] builds it.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Channels in and out.
    pub dim: usize,
    /// Hidden width over `dim` (RVT: 4).
    #[config(default = 4)]
    pub ratio: usize,
}

impl MlpConfig {
    /// Builds the MLP on `device`.
    pub fn init(&self, device: &Device) -> Mlp {
        let hidden = self.dim * self.ratio;
        Mlp {
            fc1: LinearConfig::new(self.dim, hidden).init(device),
            fc2: LinearConfig::new(hidden, self.dim).init(device),
        }
    }
}

impl Mlp {
    /// Channels-last forward.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// One partition attention block: `x += LS1(attn(partition(LN1(x))))`, `x += LS2(MLP(LN2(x)))`.
#[derive(Module, Debug)]
pub struct PartitionAttention {
    /// Pre-attention norm; `None` (identity) for the first window block, whose input is
    /// already normed by the downsampling layer.
    pub norm1: Option<LayerNorm>,
    /// Self-attention on the partitions (RVT's; `None` when `mixer` replaces it).
    pub self_attn: Option<SelfAttention>,
    /// Another kind of attention (`model.attention`), in place of `self_attn`.
    pub mixer: Option<TokenMixer>,
    /// LayerScale after attention.
    pub ls1: LayerScale,
    /// Pre-MLP norm.
    pub norm2: LayerNorm,
    /// MLP.
    pub mlp: Mlp,
    /// LayerScale after the MLP.
    pub ls2: LayerScale,
    /// Grid (true) or window (false) partition.
    pub grid: bool,
    /// Partition size in tokens.
    #[module(skip)]
    pub partition_size: [usize; 2],
}

/// Settings of one stage's attention: a window block and a grid block ([`AttentionPair`]);
/// [`AttentionConfig::init`] builds the pair, [`AttentionConfig::init_block`] one block.
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Channels.
    pub dim: usize,
    /// Channels per head.
    pub dim_head: usize,
    /// Token groups: the window (or grid) size.
    pub partition_size: [usize; 2],
    /// MLP hidden width over `dim`.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// LayerScale initial value.
    #[config(default = 1e-5)]
    pub ls_init_value: f64,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Leave out the window block's first LayerNorm: its input is already normed (the first pair
    /// after the downsampling layer).
    #[config(default = false)]
    pub skip_first_norm: bool,
    /// Both blocks' attention (`model.attention`); `None`: RVT's window block then grid block.
    #[config(default = "None")]
    pub kind: Option<AttentionKind>,
    /// Spatial reduction of `sr` attention at this stage.
    #[config(default = 1)]
    pub sr_ratio: usize,
}

impl AttentionConfig {
    /// The window block followed by the grid block.
    pub fn init(&self, device: &Device) -> AttentionPair {
        AttentionPair {
            att_window: self.init_block(PartitionType::Window, device),
            att_grid: self.init_block(PartitionType::Grid, device),
        }
    }

    /// One block of the given partition type (only a window block skips its first norm).
    pub fn init_block(&self, kind: PartitionType, device: &Device) -> PartitionAttention {
        let ln = || {
            LayerNormConfig::new(self.dim)
                .with_epsilon(self.norm_eps)
                .init(device)
        };
        let skip_norm = self.skip_first_norm && kind == PartitionType::Window;
        let layer_scale = LayerScaleConfig::new(self.dim).with_init_value(self.ls_init_value);
        let mixer = self.kind.map(|kind| {
            TokenMixerConfig::new(self.dim, self.dim / self.dim_head, kind)
                .with_window(self.partition_size)
                .with_sr_ratio(self.sr_ratio)
                .init(device)
        });
        PartitionAttention {
            norm1: if skip_norm { None } else { Some(ln()) },
            self_attn: mixer
                .is_none()
                .then(|| SelfAttentionConfig::new(self.dim, self.dim_head).init(device)),
            mixer,
            ls1: layer_scale.init(device),
            norm2: ln(),
            mlp: MlpConfig::new(self.dim)
                .with_ratio(self.mlp_ratio)
                .init(device),
            ls2: layer_scale.init(device),
            grid: kind == PartitionType::Grid,
            partition_size: self.partition_size,
        }
    }
}

impl PartitionAttention {
    fn kind(&self) -> PartitionType {
        if self.grid {
            PartitionType::Grid
        } else {
            PartitionType::Window
        }
    }

    /// `[B, H, W, C]` -> `[B, H, W, C]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        self.forward_tokens(x.reshape([b * h * w, c]), [b, h, w])
            .reshape([b, h, w, c])
    }

    /// The block on the map's tokens, `[B * H * W, C]` for a map of size `[b, h, w]` (what the
    /// exported graph runs: every layer but the partition works on a token matrix).
    pub fn forward_tokens(&self, x: Tensor<2>, bhw: [usize; 3]) -> Tensor<2> {
        let y = match &self.norm1 {
            Some(n) => layer_norm(n, x.clone()),
            None => x.clone(),
        };
        let y = match (&self.self_attn, &self.mixer) {
            (Some(attn), _) => attn.forward_tokens(y, bhw, self.kind(), self.partition_size),
            (None, Some(mixer)) => {
                let [b, h, w] = bhw;
                let c = y.dims()[1];
                mixer
                    .forward(y.reshape([b, h * w, c]), [h, w])
                    .reshape([b * h * w, c])
            }
            (None, None) => no_attention(),
        };
        let x = x + self.ls1.forward(y);
        let y = self
            .ls2
            .forward(self.mlp.forward(layer_norm(&self.norm2, x.clone())));
        x + y
    }
}

#[cold]
fn no_attention() -> ! {
    // `AttentionConfig::init_block` gives every block one of the two.
    unreachable!("an attention block needs self_attn or a mixer")
}

/// A window block followed by a grid block (reference `MaxVitAttentionPairCl`).
#[derive(Module, Debug)]
pub struct AttentionPair {
    /// Window (block) attention.
    pub att_window: PartitionAttention,
    /// Grid attention.
    pub att_grid: PartitionAttention,
}

impl AttentionPair {
    /// `[B, H, W, C]` -> `[B, H, W, C]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let x = x.reshape([b * h * w, c]);
        let x = self.att_window.forward_tokens(x, [b, h, w]);
        self.att_grid
            .forward_tokens(x, [b, h, w])
            .reshape([b, h, w, c])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use burn::tensor::{Device, Distribution, Tensor};

    use burn::tensor::activation::softmax;

    use super::super::partition::{partition, reverse, PartitionType};
    use super::{SelfAttention, SelfAttentionConfig};

    /// The paper's multi-head attention over token groups, `[B', N, C]` -> `[B', N, C]`: the
    /// reference the model's formulation is checked against.
    fn paper_attention(layer: &SelfAttention, x: Tensor<3>) -> Tensor<3> {
        let [b, n, c] = x.dims();
        let qkv = layer
            .qkv
            .forward(x)
            .reshape([b, n, layer.num_heads, 3 * layer.dim_head])
            .swap_dims(1, 2);
        let mut parts = qkv.chunk(3, 3).into_iter();
        let (q, k, v) = match (parts.next(), parts.next(), parts.next()) {
            (Some(q), Some(k), Some(v)) => (q, k, v),
            _ => unreachable!("chunk(3) returns 3 parts"),
        };
        let scale = (layer.dim_head as f64).powf(-0.5);
        let weights = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3);
        let out = weights.matmul(v).swap_dims(1, 2).reshape([b, n, c]);
        layer.proj.forward(out)
    }

    /// The export-friendly formulation computes what partition -> attention -> reverse does.
    #[test]
    fn partitioned_attention_equals_partition_then_attention() {
        let device = Device::flex();
        for (dim, dim_head, [h, w], p) in [
            (64, 32, [8, 12], [2, 3]),
            (32, 32, [6, 4], [3, 2]),
            (48, 16, [4, 4], [4, 4]),
        ] {
            let attn = SelfAttentionConfig::new(dim, dim_head).init(&device);
            let x = Tensor::<4>::random([2, h, w, dim], Distribution::Normal(0.0, 1.0), &device);
            for kind in [PartitionType::Window, PartitionType::Grid] {
                let want = reverse(
                    paper_attention(&attn, partition(x.clone(), kind, p)),
                    kind,
                    p,
                    2,
                    h,
                    w,
                );
                let got = attn.forward(x.clone(), kind, p);
                let (want, got) = (
                    want.into_data().try_to_vec::<f32>().unwrap(),
                    got.into_data().try_to_vec::<f32>().unwrap(),
                );
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = want
                    .iter()
                    .zip(&got)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    err <= 1e-5 * scale,
                    "{kind:?} dim {dim}: max error {err} (scale {scale})"
                );
            }
        }
    }
}
