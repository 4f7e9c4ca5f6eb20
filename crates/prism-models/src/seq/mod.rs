//! Next-vector sequence models: a context of `C` embedding vectors `[B, C, D]` in, the predicted
//! next vector `[B, D]` out, L2-normalised so it compares by cosine. Three architectures, as in
//! `seeds/sequence-models-comparison.md`:
//!
//! - [`SeqMlp`]: the context flattened, one hidden layer (ReLU, dropout), a projection to `D`;
//! - [`SeqLstm`]: a stacked LSTM over the context, its last hidden state through an MLP head;
//! - [`SeqTransformer`]: a projection to `d_model`, sinusoidal positions, a post-norm
//!   Transformer encoder (PyTorch's `nn.TransformerEncoderLayer` layout), the last position
//!   through an MLP head.
//!
//! The LSTM and the attention are written out of `Linear` layers here (not `burn::nn::Lstm`) so
//! that the exported graph is plain MatMul / Gemm, Sigmoid, Tanh and Softmax, which tract and
//! ONNX Runtime both run well, with the gates in PyTorch's `i, f, g, o` order.

pub mod card;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::kernels::{layer_norm, sigmoid, softmax, tanh};

pub use card::{SeqCard, SeqCardError};

/// Which network reads the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeqArchitecture {
    Mlp,
    Lstm,
    Transformer,
}

impl SeqArchitecture {
    /// `mlp`, `lstm` or `transformer`, as cards and model specs write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Lstm => "lstm",
            Self::Transformer => "transformer",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mlp" => Some(Self::Mlp),
            "lstm" => Some(Self::Lstm),
            "transformer" => Some(Self::Transformer),
            _ => None,
        }
    }
}

/// Settings of a sequence model; `hidden` is the MLP's hidden width, the LSTM's hidden size or
/// the Transformer's `d_model`.
#[derive(Config, Debug, PartialEq)]
pub struct SeqModelConfig {
    pub architecture: SeqArchitecture,
    /// Vectors of context.
    pub context: usize,
    /// Width of the vectors in and out.
    pub dim: usize,
    pub hidden: usize,
    /// LSTM layers or Transformer encoder layers (unused by the MLP).
    #[config(default = 2)]
    pub layers: usize,
    /// Attention heads (Transformer).
    #[config(default = 8)]
    pub heads: usize,
    /// Feed-forward width of an encoder layer (Transformer).
    #[config(default = 2048)]
    pub feedforward: usize,
    /// Width of the MLP head of the LSTM and the Transformer (`hidden` when 0).
    #[config(default = 0)]
    pub head_hidden: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl SeqModelConfig {
    /// Checks the sizes; the message says which one is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.context == 0 || self.dim == 0 || self.hidden == 0 {
            return Err("context, dim and hidden must be positive".into());
        }
        if self.architecture != SeqArchitecture::Mlp && self.layers == 0 {
            return Err("layers must be at least 1".into());
        }
        if self.architecture == SeqArchitecture::Transformer
            && (self.heads == 0 || self.hidden % self.heads != 0 || self.feedforward == 0)
        {
            return Err(format!(
                "d_model (hidden) {} must be a multiple of heads {} and feedforward positive",
                self.hidden, self.heads
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        Ok(())
    }

    fn head_width(&self) -> usize {
        if self.head_hidden == 0 {
            self.hidden
        } else {
            self.head_hidden
        }
    }

    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<SeqModel, String> {
        self.check()?;
        Ok(match self.architecture {
            SeqArchitecture::Mlp => SeqModel::Mlp(SeqMlp {
                hidden: LinearConfig::new(self.context * self.dim, self.hidden).init(device),
                dropout: DropoutConfig::new(self.dropout).init(),
                out: LinearConfig::new(self.hidden, self.dim).init(device),
            }),
            SeqArchitecture::Lstm => SeqModel::Lstm(SeqLstm {
                layers: (0..self.layers)
                    .map(|i| {
                        let input = if i == 0 { self.dim } else { self.hidden };
                        LstmLayer {
                            input: LinearConfig::new(input, 4 * self.hidden).init(device),
                            recurrent: LinearConfig::new(self.hidden, 4 * self.hidden).init(device),
                            hidden: self.hidden,
                        }
                    })
                    .collect(),
                head: MlpHead::new(
                    self.hidden,
                    self.head_width(),
                    self.dim,
                    self.dropout,
                    device,
                ),
            }),
            SeqArchitecture::Transformer => SeqModel::Transformer(SeqTransformer {
                embed: LinearConfig::new(self.dim, self.hidden).init(device),
                layers: (0..self.layers)
                    .map(|_| EncoderLayer::new(self, device))
                    .collect(),
                head: MlpHead::new(
                    self.hidden,
                    self.head_width(),
                    self.dim,
                    self.dropout,
                    device,
                ),
                d_model: self.hidden,
            }),
        })
    }
}

/// A sequence model of any architecture.
#[derive(Module, Debug)]
pub enum SeqModel {
    Mlp(SeqMlp),
    Lstm(SeqLstm),
    Transformer(SeqTransformer),
}

impl SeqModel {
    /// Contexts `[B, C, D]` → unit-length next vectors `[B, D]`.
    pub fn forward(&self, context: Tensor<3>) -> Tensor<2> {
        let raw = match self {
            Self::Mlp(m) => m.forward(context),
            Self::Lstm(m) => m.forward(context),
            Self::Transformer(m) => m.forward(context),
        };
        l2_normalize(raw)
    }
}

/// Rows scaled to unit length (a zero row stays near zero rather than dividing by zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt();
    x / norm
}

/// Flattened context → hidden (ReLU, dropout) → `D`.
#[derive(Module, Debug)]
pub struct SeqMlp {
    pub hidden: Linear,
    pub dropout: Dropout,
    pub out: Linear,
}

impl SeqMlp {
    pub fn forward(&self, context: Tensor<3>) -> Tensor<2> {
        let [b, c, d] = context.dims();
        let x = relu(self.hidden.forward(context.reshape([b, c * d])));
        self.out.forward(self.dropout.forward(x))
    }
}

/// `Linear → ReLU → Dropout → Linear`: the head of the LSTM and the Transformer.
#[derive(Module, Debug)]
pub struct MlpHead {
    pub fc1: Linear,
    pub dropout: Dropout,
    pub fc2: Linear,
}

impl MlpHead {
    fn new(input: usize, hidden: usize, out: usize, dropout: f64, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(input, hidden).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            fc2: LinearConfig::new(hidden, out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2
            .forward(self.dropout.forward(relu(self.fc1.forward(x))))
    }
}

/// One LSTM layer: gates `W x + U h` in PyTorch's `i, f, g, o` order.
#[derive(Module, Debug)]
pub struct LstmLayer {
    pub input: Linear,
    pub recurrent: Linear,
    pub hidden: usize,
}

impl LstmLayer {
    /// Inputs `[B, T, I]` → hidden states `[B, T, H]`, starting from zero state.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let h_size = self.hidden;
        // The input projection of every step at once; only the recurrent part is sequential.
        let projected = self.input.forward(x);
        // The state starts at zero, so the first step has no recurrent product and no forget gate
        // to apply: no zero tensors whose shape would depend on the batch in the exported graph.
        let mut state: Option<(Tensor<2>, Tensor<2>)> = None;
        let mut outputs = Vec::with_capacity(t);
        for step in 0..t {
            let mut gates = projected
                .clone()
                .slice([0..b, step..step + 1, 0..4 * h_size])
                .reshape([b, 4 * h_size]);
            gates = match (&state, &self.recurrent.bias) {
                (Some((h, _)), _) => gates + self.recurrent.forward(h.clone()),
                // U·0 + b = b: the recurrent bias still counts at the first step.
                (None, Some(bias)) => gates + bias.val().unsqueeze::<2>(),
                (None, None) => gates,
            };
            let gate = |k: usize| gates.clone().slice([0..b, k * h_size..(k + 1) * h_size]);
            let (i, g, o) = (sigmoid(gate(0)), tanh(gate(2)), sigmoid(gate(3)));
            let c = match state {
                Some((_, c)) => sigmoid(gate(1)) * c + i * g,
                None => i * g,
            };
            let h = o * tanh(c.clone());
            outputs.push(h.clone().reshape([b, 1, h_size]));
            state = Some((h, c));
        }
        Tensor::cat(outputs, 1)
    }
}

/// A stacked LSTM; the last step's hidden state of the top layer feeds the head.
#[derive(Module, Debug)]
pub struct SeqLstm {
    pub layers: Vec<LstmLayer>,
    pub head: MlpHead,
}

impl SeqLstm {
    pub fn forward(&self, context: Tensor<3>) -> Tensor<2> {
        let [b, t, _] = context.dims();
        let x = self
            .layers
            .iter()
            .fold(context, |x, layer| layer.forward(x));
        let h = x.dims()[2];
        self.head
            .forward(x.slice([0..b, t - 1..t, 0..h]).reshape([b, h]))
    }
}

/// Multi-head self-attention over the context positions.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub out: Linear,
    pub heads: usize,
}

impl SelfAttention {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, m] = x.dims();
        let (heads, dh) = (self.heads, m / self.heads);
        let split = |y: Tensor<3>| y.reshape([b, t, heads, dh]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (dh as f64).sqrt());
        let attended = softmax(scores, 3).matmul(v);
        self.out
            .forward(attended.swap_dims(1, 2).reshape([b, t, m]))
    }
}

/// A post-norm encoder layer: `x = norm1(x + attn(x)); x = norm2(x + ff(x))`, ReLU feed-forward.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub attention: SelfAttention,
    pub norm1: LayerNorm,
    pub ff1: Linear,
    pub ff2: Linear,
    pub norm2: LayerNorm,
    pub dropout: Dropout,
}

impl EncoderLayer {
    fn new(config: &SeqModelConfig, device: &Device) -> Self {
        let m = config.hidden;
        Self {
            attention: SelfAttention {
                query: LinearConfig::new(m, m).init(device),
                key: LinearConfig::new(m, m).init(device),
                value: LinearConfig::new(m, m).init(device),
                out: LinearConfig::new(m, m).init(device),
                heads: config.heads,
            },
            norm1: LayerNormConfig::new(m).init(device),
            ff1: LinearConfig::new(m, config.feedforward).init(device),
            ff2: LinearConfig::new(config.feedforward, m).init(device),
            norm2: LayerNormConfig::new(m).init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let attended = self.dropout.forward(self.attention.forward(x.clone()));
        let x = layer_norm(&self.norm1, x + attended);
        let ff = self
            .ff2
            .forward(self.dropout.forward(relu(self.ff1.forward(x.clone()))));
        layer_norm(&self.norm2, x + self.dropout.forward(ff))
    }
}

/// Projection, sinusoidal positions, encoder layers, the last position through the head.
#[derive(Module, Debug)]
pub struct SeqTransformer {
    pub embed: Linear,
    pub layers: Vec<EncoderLayer>,
    pub head: MlpHead,
    pub d_model: usize,
}

impl SeqTransformer {
    pub fn forward(&self, context: Tensor<3>) -> Tensor<2> {
        let [b, t, _] = context.dims();
        let m = self.d_model;
        let device = context.device();
        let positions = Tensor::<3>::from_data(
            TensorData::new(sinusoidal_positions(t, m), [1, t, m]),
            &device,
        );
        let x = self.embed.forward(context) + positions;
        let x = self.layers.iter().fold(x, |x, layer| layer.forward(x));
        self.head
            .forward(x.slice([0..b, t - 1..t, 0..m]).reshape([b, m]))
    }
}

/// The Transformer paper's encoding: `sin(p / 10000^(2i/m))` at even `2i`, `cos` at odd.
pub fn sinusoidal_positions(length: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; length * m];
    for p in 0..length {
        for i in 0..m {
            let pair = (i / 2) as f64 * 2.0;
            let angle = p as f64 / 10000f64.powf(pair / m as f64);
            out[p * m + i] = if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    out
}

/// Trainable parameters of a module.
pub fn parameter_count(model: &SeqModel) -> usize {
    model.num_params()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(architecture: SeqArchitecture) -> SeqModelConfig {
        SeqModelConfig::new(architecture, 5, 12, 16)
            .with_heads(4)
            .with_feedforward(32)
    }

    #[test]
    fn every_architecture_maps_contexts_to_unit_vectors() {
        let device = Device::flex();
        for arch in [
            SeqArchitecture::Mlp,
            SeqArchitecture::Lstm,
            SeqArchitecture::Transformer,
        ] {
            let model = config(arch).init(&device).unwrap();
            let x = Tensor::<3>::random(
                [3, 5, 12],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let y = model.forward(x);
            assert_eq!(y.dims(), [3, 12]);
            let norms: Vec<f32> = y
                .powi_scalar(2)
                .sum_dim(1)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert!(
                norms.iter().all(|n| (n - 1.0).abs() < 1e-4),
                "{arch:?}: {norms:?}"
            );
        }
    }

    #[test]
    fn parameter_counts_follow_the_layer_sizes() {
        let device = Device::flex();
        let (c, d, h) = (5, 12, 16);
        let mlp = config(SeqArchitecture::Mlp).init(&device).unwrap();
        assert_eq!(parameter_count(&mlp), (c * d * h + h) + (h * d + d));
        let lstm = config(SeqArchitecture::Lstm).init(&device).unwrap();
        let layer = |i: usize| (i * 4 * h + 4 * h) + (h * 4 * h + 4 * h);
        let head = (h * h + h) + (h * d + d);
        assert_eq!(parameter_count(&lstm), layer(d) + layer(h) + head);
        let tf = config(SeqArchitecture::Transformer).init(&device).unwrap();
        let enc = 4 * (h * h + h) + 2 * (2 * h) + (h * 32 + 32) + (32 * h + h);
        assert_eq!(parameter_count(&tf), (d * h + h) + 2 * enc + head);
    }

    #[test]
    fn lstm_matches_a_hand_computed_step() {
        // One layer, one step from zero state: h = o * tanh(i * g), gates from the input only.
        let device = Device::flex();
        let layer = LstmLayer {
            input: LinearConfig::new(2, 4).init(&device),
            recurrent: LinearConfig::new(1, 4).init(&device),
            hidden: 1,
        };
        let x = Tensor::<3>::from_data(TensorData::new(vec![0.5f32, -1.0], [1, 1, 2]), &device);
        let gates: Vec<f32> = layer
            .input
            .forward(x.clone().reshape([1, 2]))
            .add(layer.recurrent.forward(Tensor::zeros([1, 1], &device)))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let s = |v: f32| 1.0 / (1.0 + (-v).exp());
        let c = s(gates[0]) * gates[2].tanh();
        let expected = s(gates[3]) * c.tanh();
        let h: Vec<f32> = layer.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert!((h[0] - expected).abs() < 1e-6, "{} vs {expected}", h[0]);
    }

    #[test]
    fn positions_are_the_papers() {
        let p = sinusoidal_positions(3, 4);
        assert_eq!(&p[..4], &[0.0, 1.0, 0.0, 1.0]);
        assert!((p[4] - 1f32.sin()).abs() < 1e-6);
        assert!((p[6] - (1.0f64 / 100.0).sin() as f32).abs() < 1e-6);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let device = Device::flex();
        assert!(config(SeqArchitecture::Transformer)
            .with_heads(5)
            .init(&device)
            .is_err());
        assert!(SeqModelConfig::new(SeqArchitecture::Mlp, 0, 4, 4)
            .init(&device)
            .is_err());
    }
}
