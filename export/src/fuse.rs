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
//! - **input convolution split**: a strided convolution reading a graph input whose channel
//!   count is above 16 and not a multiple of 16 (event histograms: 20 channels) is split into a
//!   convolution of the first 16k channels and a space-to-depth convolution of the rest (the r
//!   channels rearranged into `r * stride^2` channels at the output resolution, then a stride-1
//!   convolution with the taps rearranged to match), whose results are added. ONNX Runtime's
//!   blocked (NCHWc) kernels would otherwise pad the input to the next multiple of 16 channels
//!   and reorder all of it; tract is slow on a strided convolution of very few channels, which
//!   the space-to-depth form avoids. (Measured alternative: five 4-channel convolutions, summed,
//!   ran rvt-tiny-gen1 1.04x faster in ONNX Runtime but rvt-tiny-1mpx 2.4x slower in tract.)

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

/// Apply every rewrite. Dead nodes and unused initializers are left for [`crate::optimize::tidy`].
pub(crate) fn fuse(graph: &mut GraphProto, shapes: &mut Shapes) -> FuseStats {
    let mut r = Rewriter::new(graph, shapes);
    FuseStats {
        batch_norms: r.fold_batch_norms(),
        squeezed: r.squeeze_constants(),
        channel_scales: r.fold_channel_scales(),
        upsamples: r.upsample_to_resize(),
        split_convs: r.split_input_convs(),
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

    /// `BatchNormalization(Conv(x))` -> `Conv(x)` with the normalization folded into the weights.
    fn fold_batch_norms(&mut self) -> usize {
        let ix = self.index();
        let mut dead = HashSet::new();
        let mut edits = Vec::new();
        for (bi, bn) in self.g.node.iter().enumerate() {
            if bn.op_type != "BatchNormalization" || bn.output.len() != 1 || bn.input.len() != 5 {
                continue;
            }
            let x = &bn.input[0];
            let Some(&ci) = ix.producer.get(x) else {
                continue;
            };
            let conv = &self.g.node[ci];
            if conv.op_type != "Conv" || !self.single_use(&ix, x) {
                continue;
            }
            let Some((wd, w)) = self.f32_const(&ix, &conv.input[1]) else {
                continue;
            };
            let Some(&o) = wd.first() else { continue };
            let o = o as usize;
            let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
                Some(b) => match self.f32_const(&ix, b) {
                    Some((_, v)) if v.len() == o => v,
                    _ => continue,
                },
                None => vec![0.0; o],
            };
            let params: Option<Vec<Vec<f32>>> = bn.input[1..]
                .iter()
                .map(|p| {
                    self.f32_const(&ix, p)
                        .map(|(_, v)| v)
                        .filter(|v| v.len() == o)
                })
                .collect();
            let Some(params) = params else { continue };
            let eps = match attr(bn, "epsilon") {
                Some(AttributeValue::Float(e)) => f64::from(*e),
                _ => 1e-5,
            };
            let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
            let scale: Vec<f64> = (0..o)
                .map(|c| f64::from(gamma[c]) / (f64::from(var[c]) + eps).sqrt())
                .collect();
            let per = w.len() / o.max(1);
            let w2: Vec<f32> = w
                .iter()
                .enumerate()
                .map(|(i, v)| (f64::from(*v) * scale[i / per]) as f32)
                .collect();
            let b2: Vec<f32> = (0..o)
                .map(|c| {
                    ((f64::from(bias[c]) - f64::from(mean[c])) * scale[c] + f64::from(beta[c]))
                        as f32
                })
                .collect();
            edits.push((ci, wd, w2, b2, bn.output[0].clone()));
            dead.insert(bi);
        }
        let count = edits.len();
        for (ci, wd, w2, b2, out) in edits {
            let w = self.add_f32("conv_bn_weight", wd, &w2);
            let b = self.add_f32("conv_bn_bias", vec![b2.len() as i64], &b2);
            let conv = &mut self.g.node[ci];
            conv.input.truncate(2);
            conv.input[1] = w;
            conv.input.push(b);
            conv.output[0] = out;
        }
        self.remove_nodes(&dead);
        count
    }

    /// Drop leading unit axes of constant operands of `MatMul` (weights) and of broadcast
    /// element-wise operations (biases, scales) where the result keeps its shape.
    fn squeeze_constants(&mut self) -> usize {
        let ix = self.index();
        let mut edits: Vec<(usize, usize, Vec<i64>)> = Vec::new();
        for (ni, n) in self.g.node.iter().enumerate() {
            let (slots, keep): (&[usize], usize) = match n.op_type.as_str() {
                "MatMul" => (&[1], 2),
                "Add" | "Sub" | "Mul" | "Div" => (&[0, 1], 1),
                _ => continue,
            };
            if n.input.len() != 2 {
                continue;
            }
            for &slot in slots {
                let Some(&ti) = ix.init.get(&n.input[slot]) else {
                    continue;
                };
                let dims = &self.g.initializer[ti].dims;
                if dims.len() <= keep || !leading_ones(dims, keep) {
                    continue;
                }
                let Some(other) = self.shapes.get(&n.input[1 - slot]) else {
                    continue;
                };
                if other.len() < dims.len() {
                    continue;
                }
                edits.push((ni, slot, dims[dims.len() - keep..].to_vec()));
            }
        }
        let count = edits.len();
        let uses = |name: &str| ix.consumers.get(name).map_or(0, Vec::len);
        for (ni, slot, dims) in edits {
            let name = self.g.node[ni].input[slot].clone();
            let ti = ix.init[&name];
            if uses(&name) == 1 && !self.outputs.contains(&name) {
                self.g.initializer[ti].dims = dims;
            } else {
                let t = &self.g.initializer[ti];
                let (elem, raw) = (t.data_type, RawData::Bytes(t.raw_data.as_bytes().to_vec()));
                let new = self.fresh(&format!("{name}_2d"));
                self.g.initializer.push(TensorProto {
                    name: new.clone(),
                    dims,
                    data_type: elem,
                    raw_data: raw,
                });
                self.g.node[ni].input[slot] = new;
            }
        }
        count
    }

    /// `Mul(Add(MatMul(x, W), b), g)` -> `Add(MatMul(x, W * g), b * g)` for a per-channel `g`.
    fn fold_channel_scales(&mut self) -> usize {
        let mut count = 0;
        // One fold per index build: folds may share nodes' neighbourhoods.
        loop {
            let ix = self.index();
            let Some(plan) = self.find_channel_scale(&ix) else {
                break;
            };
            let (mul, last, matmul, w_slot, w, wd, bias, g) = plan;
            let c = g.len();
            let w2: Vec<f32> = w.iter().enumerate().map(|(i, v)| v * g[i % c]).collect();
            let w_name = self.add_f32("linear_scaled_weight", wd, &w2);
            self.g.node[matmul].input[w_slot] = w_name;
            if let Some((add, b_slot, b, bd)) = bias {
                let b2: Vec<f32> = b.iter().zip(&g).map(|(v, s)| v * s).collect();
                let b_name = self.add_f32("linear_scaled_bias", bd, &b2);
                self.g.node[add].input[b_slot] = b_name;
            }
            let out = self.g.node[mul].output[0].clone();
            self.g.node[last].output[0] = out;
            self.remove_nodes(&HashSet::from([mul]));
            count += 1;
        }
        count
    }

    #[allow(clippy::type_complexity)]
    fn find_channel_scale(
        &self,
        ix: &Index,
    ) -> Option<(
        usize,
        usize,
        usize,
        usize,
        Vec<f32>,
        Vec<i64>,
        Option<(usize, usize, Vec<f32>, Vec<i64>)>,
        Vec<f32>,
    )> {
        for (mi, m) in self.g.node.iter().enumerate() {
            if m.op_type != "Mul" || m.input.len() != 2 {
                continue;
            }
            for slot in 0..2 {
                let Some((gd, g)) = self.f32_const(ix, &m.input[slot]) else {
                    continue;
                };
                let x = &m.input[1 - slot];
                let c = g.len();
                if c < 2 || !leading_ones(&gd, 1) || gd.last() != Some(&(c as i64)) {
                    continue;
                }
                // The scale must not add axes to x.
                let Some(xs) = self.shapes.get(x) else {
                    continue;
                };
                if xs.len() < gd.len() || xs.last() != Some(&(c as i64)) {
                    continue;
                }
                // Walk back through layout operations that keep the last axis.
                let mut cur = x.clone();
                let Some(&last) = ix.producer.get(&cur) else {
                    continue;
                };
                let found = loop {
                    if !self.single_use(ix, &cur) {
                        break None;
                    }
                    let Some(&pi) = ix.producer.get(&cur) else {
                        break None;
                    };
                    let p = &self.g.node[pi];
                    match p.op_type.as_str() {
                        "Transpose" => {
                            let Some(AttributeValue::Ints(perm)) = attr(p, "perm") else {
                                break None;
                            };
                            if perm.last().copied() != Some(perm.len() as i64 - 1) {
                                break None;
                            }
                            cur = p.input[0].clone();
                        }
                        "Reshape" => {
                            let keeps = |v: &str| {
                                self.shapes.get(v).and_then(|s| s.last().copied()) == Some(c as i64)
                            };
                            if !keeps(&p.input[0]) || !keeps(&p.output[0]) {
                                break None;
                            }
                            cur = p.input[0].clone();
                        }
                        "Add" | "MatMul" => break Some(pi),
                        _ => break None,
                    }
                };
                let Some(pi) = found else { continue };
                let p = &self.g.node[pi];
                // Optional bias: Add(MatMul(..), b) with b of C elements on the last axis.
                let (matmul_value, bias) = if p.op_type == "Add" {
                    let mut hit = None;
                    for b_slot in 0..2 {
                        let Some((bd, b)) = self.f32_const(ix, &p.input[b_slot]) else {
                            continue;
                        };
                        if b.len() == c && leading_ones(&bd, 1) && bd.last() == Some(&(c as i64)) {
                            hit = Some((p.input[1 - b_slot].clone(), Some((pi, b_slot, b, bd))));
                        }
                    }
                    match hit {
                        Some(h) => h,
                        None => continue,
                    }
                } else {
                    (p.output[0].clone(), None)
                };
                let mi2 = if bias.is_some() {
                    if !self.single_use(ix, &matmul_value) {
                        continue;
                    }
                    let Some(&k) = ix.producer.get(&matmul_value) else {
                        continue;
                    };
                    k
                } else {
                    pi
                };
                let mm = &self.g.node[mi2];
                if mm.op_type != "MatMul" {
                    continue;
                }
                let Some((wd, w)) = self.f32_const(ix, &mm.input[1]) else {
                    continue;
                };
                if wd.len() != 2 || wd[1] != c as i64 {
                    continue;
                }
                return Some((mi, last, mi2, 1, w, wd, bias, g));
            }
        }
        None
    }

    /// `Reshape -> Expand -> Reshape` nearest upsampling by integer factors -> `Resize`.
    fn upsample_to_resize(&mut self) -> usize {
        let ix = self.index();
        let mut dead = HashSet::new();
        let mut edits = Vec::new();
        for (ei, e) in self.g.node.iter().enumerate() {
            if e.op_type != "Expand" {
                continue;
            }
            let Some(&r1i) = ix.producer.get(&e.input[0]) else {
                continue;
            };
            let r1 = &self.g.node[r1i];
            if r1.op_type != "Reshape"
                || !self.single_use(&ix, &e.input[0])
                || !self.single_use(&ix, &e.output[0])
            {
                continue;
            }
            let r2i = ix.consumers[&e.output[0]][0];
            let r2 = &self.g.node[r2i];
            if r2.op_type != "Reshape" {
                continue;
            }
            let (Some(xs), Some(s1), Some(se), Some(s2)) = (
                self.static_shape(&r1.input[0]),
                self.static_shape(&r1.output[0]),
                self.static_shape(&e.output[0]),
                self.static_shape(&r2.output[0]),
            ) else {
                continue;
            };
            let &[n, c, h, w] = xs.as_slice() else {
                continue;
            };
            if s1.as_slice() != [n, c, h, 1, w, 1] {
                continue;
            }
            let &[n2, c2, h2, a, w2, b] = se.as_slice() else {
                continue;
            };
            if (n2, c2, h2, w2) != (n, c, h, w)
                || a < 1
                || b < 1
                || s2.as_slice() != [n, c, h * a, w * b]
            {
                continue;
            }
            edits.push((r2i, r1.input[0].clone(), r2.output[0].clone(), [a, b]));
            dead.extend([r1i, ei]);
        }
        let count = edits.len();
        for (r2i, x, out, [a, b]) in edits {
            let scales = self.add_f32("upsample_scales", vec![4], &[1.0, 1.0, a as f32, b as f32]);
            let name = self.fresh("Resize");
            self.g.node[r2i] = NodeProto {
                input: vec![x, String::new(), scales],
                output: vec![out],
                name,
                op_type: "Resize".into(),
                attribute: vec![
                    Attribute::string("mode", "nearest"),
                    Attribute::string("coordinate_transformation_mode", "asymmetric"),
                    Attribute::string("nearest_mode", "floor"),
                ],
                doc_string: "nearest upsampling (reshape + expand + reshape)".into(),
            };
        }
        self.remove_nodes(&dead);
        count
    }

    /// Split a graph-input convolution with `16k + r` input channels (`0 < r < 16`, `k >= 1`)
    /// into a 16k-channel convolution and a space-to-depth convolution of the other r channels.
    fn split_input_convs(&mut self) -> usize {
        const BLOCK: i64 = 16;
        let ix = self.index();
        let mut edits = Vec::new();
        for (ci, conv) in self.g.node.iter().enumerate() {
            if conv.op_type != "Conv" || !self.inputs.contains(&conv.input[0]) {
                continue;
            }
            if attr_int(conv, "group").unwrap_or(1) != 1 {
                continue;
            }
            if let Some(AttributeValue::String(p)) = attr(conv, "auto_pad") {
                if p != "NOTSET" {
                    continue;
                }
            }
            if let Some(AttributeValue::Ints(d)) = attr(conv, "dilations") {
                if d.iter().any(|d| *d != 1) {
                    continue;
                }
            }
            let Some((wd, w)) = self.f32_const(&ix, &conv.input[1]) else {
                continue;
            };
            let Some(xs) = self.shapes.get(&conv.input[0]) else {
                continue;
            };
            if wd.len() != 4 || xs.len() != 4 {
                continue;
            }
            let cin = wd[1];
            if cin <= BLOCK || cin % BLOCK == 0 || xs[1] != cin {
                continue;
            }
            let ints = |name: &str, default: i64, n: usize| match attr(conv, name) {
                Some(AttributeValue::Ints(v)) if v.len() == n => v.clone(),
                None => vec![default; n],
                _ => vec![],
            };
            let (strides, pads) = (ints("strides", 1, 2), ints("pads", 0, 4));
            if strides.len() != 2 || pads.len() != 4 {
                continue;
            }
            let axes: Option<Vec<SpaceToDepth>> = (0..2)
                .map(|a| SpaceToDepth::new(xs[2 + a], wd[2 + a], strides[a], pads[a], pads[2 + a]))
                .collect();
            let Some(axes) = axes else { continue };
            edits.push((ci, wd, w, [axes[0], axes[1]]));
        }
        let count = edits.len();
        // From the back, so that earlier indices stay valid while nodes are inserted.
        for (ci, wd, w, [ay, ax]) in edits.into_iter().rev() {
            let conv = self.g.node[ci].clone();
            let (o, cin, kh, kw) = (
                wd[0] as usize,
                wd[1] as usize,
                wd[2] as usize,
                wd[3] as usize,
            );
            let c0 = cin - cin % BLOCK as usize;
            let r = cin - c0;
            let x = conv.input[0].clone();
            let xname = x.clone();
            let doc = conv.doc_string.clone();
            let split_sizes = self.add_i64("conv_split_sizes", &[c0 as i64, r as i64]);
            let (x0, x1) = (
                self.fresh(&format!("{x}_part0")),
                self.fresh(&format!("{x}_part1")),
            );
            let mut nodes = vec![self.node(
                "Split",
                vec![x, split_sizes],
                &x0,
                vec![Attribute::int("axis", 1)],
                &doc,
            )];
            nodes[0].output.push(x1.clone());
            // The first 16k channels: the same convolution on fewer channels.
            let mut w0 = Vec::with_capacity(o * c0 * kh * kw);
            for oc in 0..o {
                let base = oc * cin * kh * kw;
                w0.extend_from_slice(&w[base..base + c0 * kh * kw]);
            }
            let w0 = self.add_f32(
                "conv_split_weight",
                vec![wd[0], c0 as i64, wd[2], wd[3]],
                &w0,
            );
            let mut inputs = vec![x0, w0];
            inputs.extend(conv.input.iter().skip(2).cloned());
            let y0 = self.fresh(&format!("{}_part0", conv.output[0]));
            nodes.push(self.node("Conv", inputs, &y0, conv.attribute.clone(), &doc));
            // The other r channels: space to depth by the stride, then a stride-1 convolution
            // whose taps are the original taps rearranged (zeros where a block position falls
            // outside the original kernel).
            // Two transposes that each move one axis, separated by a reshape: ONNX Runtime runs
            // these with its single-axis copies, about ten times faster than the one general
            // transpose [N, r, H/s, s, W/s, s] -> [N, r, s, s, H/s, W/s] (and does not merge them).
            let (sh, sw) = (ay.stride as usize, ax.stride as usize);
            let depth = r * sh * sw;
            let steps: [(&[i64], Option<&[i64]>); 3] = [
                (
                    &[0, r as i64, ay.blocks, ay.stride, ax.blocks, ax.stride],
                    Some(&[0, 1, 2, 3, 5, 4]),
                ),
                (
                    &[0, r as i64, ay.blocks, ay.stride * ax.stride, ax.blocks],
                    Some(&[0, 1, 3, 2, 4]),
                ),
                (&[0, depth as i64, ay.blocks, ax.blocks], None),
            ];
            let mut cur = x1;
            for (k, (shape, perm)) in steps.into_iter().enumerate() {
                let shape = self.add_i64("s2d_shape", shape);
                let reshaped = self.fresh(&format!("{xname}_s2d{k}"));
                nodes.push(self.node("Reshape", vec![cur, shape], &reshaped, vec![], &doc));
                cur = reshaped;
                if let Some(perm) = perm {
                    let moved = self.fresh(&format!("{xname}_s2d{k}t"));
                    let attrs = vec![Attribute::ints("perm", perm.iter().copied())];
                    nodes.push(self.node("Transpose", vec![cur], &moved, attrs, &doc));
                    cur = moved;
                }
            }
            let x1d = cur;
            let (kh2, kw2) = (ay.kernel() as usize, ax.kernel() as usize);
            let mut w1 = vec![0f32; o * depth * kh2 * kw2];
            for oc in 0..o {
                for c in 0..r {
                    for (sy, ky0) in (0..sh).map(|sy| (sy, sy as i64)) {
                        for (sx, kx0) in (0..sw).map(|sx| (sx, sx as i64)) {
                            for a in 0..kh2 {
                                for b in 0..kw2 {
                                    let (Some(ky), Some(kx)) = (ay.tap(a, ky0), ax.tap(b, kx0))
                                    else {
                                        continue;
                                    };
                                    let d = (c * sh + sy) * sw + sx;
                                    w1[((oc * depth + d) * kh2 + a) * kw2 + b] =
                                        w[((oc * cin + c0 + c) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                }
            }
            let w1 = self.add_f32(
                "conv_s2d_weight",
                vec![wd[0], depth as i64, kh2 as i64, kw2 as i64],
                &w1,
            );
            let y1 = self.fresh(&format!("{}_part1", conv.output[0]));
            let attrs = vec![
                Attribute::ints("strides", [1, 1]),
                Attribute::ints(
                    "pads",
                    [ay.pad_begin(), ax.pad_begin(), ay.pad_end(), ax.pad_end()],
                ),
                Attribute::ints("dilations", [1, 1]),
                Attribute::int("group", 1),
                Attribute::ints("kernel_shape", [kh2 as i64, kw2 as i64]),
            ];
            nodes.push(self.node("Conv", vec![x1d, w1], &y1, attrs, &doc));
            if let Some(s) = self.shapes.get(&conv.output[0]).cloned() {
                self.shapes.insert(y0.clone(), s.clone());
                self.shapes.insert(y1.clone(), s);
            }
            nodes.push(self.node("Add", vec![y0, y1], &conv.output[0], vec![], &doc));
            self.g.node.splice(ci..=ci, nodes);
        }
        count
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

/// One spatial axis of a strided convolution rewritten as space-to-depth by the stride followed
/// by a stride-1 convolution over blocks: output `i` reads input rows `s*i - p + k'` for taps
/// `k' < kernel`, which lie in blocks `i + d` for `d` in `dmin..=dmax`.
#[derive(Debug, Clone, Copy)]
struct SpaceToDepth {
    stride: i64,
    /// Blocks along the axis (input length / stride).
    blocks: i64,
    pad: i64,
    taps: i64,
    dmin: i64,
    dmax: i64,
}

impl SpaceToDepth {
    /// `None` unless the stride is above 1, divides the input length, the output has one cell
    /// per block, and the block offsets straddle 0 (the new padding is not negative).
    fn new(len: i64, taps: i64, stride: i64, pad_begin: i64, pad_end: i64) -> Option<Self> {
        if stride < 2 || len <= 0 || len % stride != 0 {
            return None;
        }
        let blocks = len / stride;
        if (len + pad_begin + pad_end - taps) / stride + 1 != blocks
            || len + pad_begin + pad_end < taps
        {
            return None;
        }
        let dmin = (-pad_begin).div_euclid(stride);
        let dmax = (taps - 1 - pad_begin).div_euclid(stride);
        (dmin <= 0 && dmax >= 0).then_some(Self {
            stride,
            blocks,
            pad: pad_begin,
            taps,
            dmin,
            dmax,
        })
    }
    fn kernel(&self) -> i64 {
        self.dmax - self.dmin + 1
    }
    fn pad_begin(&self) -> i64 {
        -self.dmin
    }
    fn pad_end(&self) -> i64 {
        self.dmax
    }
    /// The original tap read by block position `a` of the new kernel at offset `offset` inside
    /// the block, if it is inside the original kernel.
    fn tap(&self, a: usize, offset: i64) -> Option<usize> {
        let k = self.stride * (a as i64 + self.dmin) + offset + self.pad;
        (0..self.taps).contains(&k).then_some(k as usize)
    }
}
