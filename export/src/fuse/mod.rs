//! ONNX-level rewrites of a lowered graph, so that runtimes do less work per inference.
//!
//! Each rewrite is exact up to float rounding and keeps every graph input and output:
//!
//! - **batch norm into conv**: `BatchNormalization(Conv(x, W, b))` with constant statistics
//!   becomes one `Conv` with rescaled weights and bias;
//! - **2-D weights**: a constant operand with leading unit axes (`[1, K, N]` weights of a
//!   broadcast `MatMul`, `[1, 1, N]` biases) loses those axes when the other operand has at
//!   least its rank, the form runtimes fuse (ONNX Runtime's `MatMul` + `Add` -> `Gemm`);
//! - **channel scales into linear layers**: `Mul(Add(MatMul(x, W), b), g)` with a per-channel
//!   constant `g` (LayerScale), possibly through reshapes and transposes that keep the last axis,
//!   becomes `Add(MatMul(x, W * g), b * g)`;
//! - **nearest upsampling**: `Reshape [N, C, H, 1, W, 1]` -> `Expand [N, C, H, a, W, b]` ->
//!   `Reshape [N, C, aH, bW]` becomes one `Resize` (nearest, integer scales);
//! - **input convolution split** (only with [`crate::ExportOptions::split_input_conv`]; a choice
//!   for event histograms on ONNX Runtime and tract, which the RVT export makes): a strided convolution reading a graph input whose channel
//!   count is above 16 and not a multiple of 16 (event histograms: 20 channels) is split into a
//!   convolution of the first 16k channels and a space-to-depth convolution of the rest (the r
//!   channels rearranged into `r * stride^2` channels at the output resolution, then a stride-1
//!   convolution with the taps rearranged to match), whose results are added. ONNX Runtime's
//!   blocked (NCHWc) kernels would otherwise pad the input to the next multiple of 16 channels
//!   and reorder all of it; tract is slow on a strided convolution of very few channels, which
//!   the space-to-depth form avoids. (Measured alternative: five 4-channel convolutions, summed,
//!   ran rvt-tiny-gen1 1.04x faster in ONNX Runtime but rvt-tiny-1mpx 2.4x slower in tract.)

mod batch_norm;
mod channel_scale;
mod constants_2d;
mod input_conv_split;
mod upsample;

use std::collections::{HashMap, HashSet};

use crate::proto::{
    data_type, Attribute, AttributeValue, GraphProto, NodeProto, RawData, TensorProto,
};

/// Static shapes of values, by name; `-1` marks a symbolic axis. Values without an entry have
/// an unknown shape and are left alone by rewrites that need one.
pub(crate) type Shapes = HashMap<String, Vec<i64>>;

/// Figures of one [`fuse`] call.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FuseStats {
    pub batch_norms: usize,
    pub squeezed: usize,
    pub channel_scales: usize,
    pub upsamples: usize,
    pub split_convs: usize,
}

/// Apply every rewrite, the input-convolution split only when `split_input_convs`. Dead nodes
/// and unused initializers are left for [`crate::optimize::tidy`].
pub(crate) fn fuse(
    graph: &mut GraphProto,
    shapes: &mut Shapes,
    split_input_convs: bool,
) -> FuseStats {
    let mut r = Rewriter::new(graph, shapes);
    FuseStats {
        batch_norms: r.fold_batch_norms(),
        squeezed: r.squeeze_constants(),
        channel_scales: r.fold_channel_scales(),
        upsamples: r.upsample_to_resize(),
        split_convs: if split_input_convs {
            r.split_input_convs()
        } else {
            0
        },
    }
}

/// Producers, consumers and initializers by value name.
struct Index {
    producer: HashMap<String, usize>,
    consumers: HashMap<String, Vec<usize>>,
    init: HashMap<String, usize>,
}

struct Rewriter<'a> {
    g: &'a mut GraphProto,
    shapes: &'a mut Shapes,
    outputs: HashSet<String>,
    inputs: HashSet<String>,
    names: HashSet<String>,
    counter: usize,
}

fn attr<'n>(n: &'n NodeProto, name: &str) -> Option<&'n AttributeValue> {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| &a.value)
}

fn attr_int(n: &NodeProto, name: &str) -> Option<i64> {
    match attr(n, name) {
        Some(AttributeValue::Int(v)) => Some(*v),
        _ => None,
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Whether there are at least `keep` axes and all but the last `keep` have length 1.
fn leading_ones(dims: &[i64], keep: usize) -> bool {
    dims.len() >= keep && dims[..dims.len() - keep].iter().all(|d| *d == 1)
}

impl<'a> Rewriter<'a> {
    fn new(g: &'a mut GraphProto, shapes: &'a mut Shapes) -> Self {
        let outputs = g.output.iter().map(|v| v.name.clone()).collect();
        let inputs = g.input.iter().map(|v| v.name.clone()).collect();
        let mut names: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
        for n in &g.node {
            names.extend(n.input.iter().cloned());
            names.extend(n.output.iter().cloned());
            names.insert(n.name.clone());
        }
        names.extend(g.input.iter().map(|v| v.name.clone()));
        Self {
            g,
            shapes,
            outputs,
            inputs,
            names,
            counter: 0,
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        loop {
            self.counter += 1;
            let name = format!("{hint}_f{}", self.counter);
            if self.names.insert(name.clone()) {
                return name;
            }
        }
    }

    fn index(&self) -> Index {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in self.g.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.clone(), i);
            }
            for x in n.input.iter().filter(|x| !x.is_empty()) {
                consumers.entry(x.clone()).or_default().push(i);
            }
        }
        let init = self
            .g
            .initializer
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Index {
            producer,
            consumers,
            init,
        }
    }

    /// Whether `value` is read by exactly one node and is no graph output.
    fn single_use(&self, ix: &Index, value: &str) -> bool {
        !self.outputs.contains(value) && ix.consumers.get(value).is_some_and(|c| c.len() == 1)
    }

    /// A float32 constant: an initializer, or a `ConstantOfShape` of a constant shape.
    fn f32_const(&self, ix: &Index, name: &str) -> Option<(Vec<i64>, Vec<f32>)> {
        if let Some(&i) = ix.init.get(name) {
            let t = &self.g.initializer[i];
            return (t.data_type == data_type::FLOAT)
                .then(|| (t.dims.clone(), f32s(t.raw_data.as_bytes())));
        }
        let n = &self.g.node[*ix.producer.get(name)?];
        if n.op_type != "ConstantOfShape" {
            return None;
        }
        let dims = self.i64_const(ix, n.input.first()?)?;
        let value = match attr(n, "value") {
            Some(AttributeValue::Tensor(t)) if t.data_type == data_type::FLOAT => {
                *f32s(t.raw_data.as_bytes()).first()?
            }
            None => 0.0,
            _ => return None,
        };
        let count = dims
            .iter()
            .try_fold(1usize, |acc, d| usize::try_from(*d).ok().map(|d| acc * d))?;
        Some((dims, vec![value; count]))
    }

    fn i64_const(&self, ix: &Index, name: &str) -> Option<Vec<i64>> {
        let t = &self.g.initializer[*ix.init.get(name)?];
        (t.data_type == data_type::INT64).then(|| {
            t.raw_data
                .as_bytes()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        })
    }

    /// A new float32 initializer.
    fn add_f32(&mut self, hint: &str, dims: Vec<i64>, values: &[f32]) -> String {
        let name = self.fresh(hint);
        self.g.initializer.push(TensorProto {
            name: name.clone(),
            dims,
            data_type: data_type::FLOAT,
            raw_data: RawData::Bytes(f32_bytes(values)),
        });
        name
    }

    fn add_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.g.initializer.push(TensorProto {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            raw_data: RawData::Bytes(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        name
    }

    fn static_shape(&self, value: &str) -> Option<&Vec<i64>> {
        self.shapes.get(value).filter(|s| s.iter().all(|d| *d >= 0))
    }

    fn remove_nodes(&mut self, dead: &HashSet<usize>) {
        let mut i = 0;
        self.g.node.retain(|_| {
            i += 1;
            !dead.contains(&(i - 1))
        });
    }
    fn node(
        &mut self,
        op: &str,
        input: Vec<String>,
        output: &str,
        attribute: Vec<Attribute>,
        doc: &str,
    ) -> NodeProto {
        NodeProto {
            input,
            output: vec![output.to_string()],
            name: self.fresh(op),
            op_type: op.into(),
            attribute,
            doc_string: doc.to_string(),
        }
    }
}
