//! MaxViT-style attention blocks (channels-last), as in RVT's `PartitionAttentionCl`.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Tensor};

use super::partition::{partition, reverse, PartitionType};

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

impl SelfAttention {
    /// New attention layer for `dim` channels.
    pub fn new(dim: usize, dim_head: usize, device: &Device) -> Self {
        assert!(
            dim % dim_head == 0,
            "dim {dim} is not a multiple of dim_head {dim_head}"
        );
        Self {
            qkv: LinearConfig::new(dim, 3 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            num_heads: dim / dim_head,
            dim_head,
        }
    }

    /// `[B', N, C]` -> `[B', N, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, c] = x.dims();
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, self.num_heads, 3 * self.dim_head])
            .swap_dims(1, 2);
        let mut parts = qkv.chunk(3, 3).into_iter();
        let (q, k, v) = match (parts.next(), parts.next(), parts.next()) {
            (Some(q), Some(k), Some(v)) => (q, k, v),
            _ => unreachable!("chunk(3) returns 3 parts"),
        };
        let scale = (self.dim_head as f64).powf(-0.5);
        let attn = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3);
        let out = attn.matmul(v).swap_dims(1, 2).reshape([b, n, c]);
        self.proj.forward(out)
    }
}

/// LayerScale: per-channel multiplication by `gamma` (last axis).
#[derive(Module, Debug)]
pub struct LayerScale {
    /// Scale per channel, initialised to `init_value`.
    pub gamma: Param<Tensor<1>>,
}

impl LayerScale {
    /// New LayerScale with every gamma equal to `init_value`.
    pub fn new(dim: usize, init_value: f64, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([dim], device).mul_scalar(init_value)),
        }
    }

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

impl Mlp {
    /// New MLP with hidden width `dim * ratio`.
    pub fn new(dim: usize, ratio: usize, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(dim, dim * ratio).init(device),
            fc2: LinearConfig::new(dim * ratio, dim).init(device),
        }
    }

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
    /// Self-attention on the partitions.
    pub self_attn: SelfAttention,
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

/// Settings shared by the attention blocks of one stage.
#[derive(Debug, Clone, Copy)]
pub struct AttentionSettings {
    /// Channels.
    pub dim: usize,
    /// Channels per head.
    pub dim_head: usize,
    /// MLP ratio.
    pub mlp_ratio: usize,
    /// LayerScale init.
    pub ls_init_value: f64,
    /// LayerNorm epsilon.
    pub norm_eps: f64,
    /// Partition size.
    pub partition_size: [usize; 2],
}

impl PartitionAttention {
    /// New block of the given partition type.
    pub fn new(
        s: AttentionSettings,
        kind: PartitionType,
        skip_first_norm: bool,
        device: &Device,
    ) -> Self {
        let ln = || {
            LayerNormConfig::new(s.dim)
                .with_epsilon(s.norm_eps)
                .init(device)
        };
        Self {
            norm1: if skip_first_norm { None } else { Some(ln()) },
            self_attn: SelfAttention::new(s.dim, s.dim_head, device),
            ls1: LayerScale::new(s.dim, s.ls_init_value, device),
            norm2: ln(),
            mlp: Mlp::new(s.dim, s.mlp_ratio, device),
            ls2: LayerScale::new(s.dim, s.ls_init_value, device),
            grid: kind == PartitionType::Grid,
            partition_size: s.partition_size,
        }
    }

    fn kind(&self) -> PartitionType {
        if self.grid {
            PartitionType::Grid
        } else {
            PartitionType::Window
        }
    }

    /// `[B, H, W, C]` -> `[B, H, W, C]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, _] = x.dims();
        let y = match &self.norm1 {
            Some(n) => n.forward(x.clone()),
            None => x.clone(),
        };
        let p = self.partition_size;
        let y = reverse(
            self.self_attn.forward(partition(y, self.kind(), p)),
            self.kind(),
            p,
            b,
            h,
            w,
        );
        let x = x + self.ls1.forward(y);
        let y = self
            .ls2
            .forward(self.mlp.forward(self.norm2.forward(x.clone())));
        x + y
    }
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
    /// New pair; `skip_first_norm` drops the window block's first LayerNorm.
    pub fn new(s: AttentionSettings, skip_first_norm: bool, device: &Device) -> Self {
        Self {
            att_window: PartitionAttention::new(s, PartitionType::Window, skip_first_norm, device),
            att_grid: PartitionAttention::new(s, PartitionType::Grid, false, device),
        }
    }

    /// `[B, H, W, C]` -> `[B, H, W, C]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.att_grid.forward(self.att_window.forward(x))
    }
}
