//! Writes the QDQ model: int8 weights behind `DequantizeLinear`, int32 biases, and a
//! `QuantizeLinear` -> `DequantizeLinear` pair on each calibrated activation.
//!
//! The outputs of a quantized node are read through their pair by every consumer, so ONNX
//! Runtime sees the `DQ -> Conv -> Q` pattern it fuses into an int8 kernel. Activations produced
//! by float nodes are quantized only on the way into a quantized node.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb;

use super::calibrate::Range;
use super::graph::{self, dtype, GraphIndex};
use super::plan::Plan;
use super::{ActivationType, QuantizeError, QuantizeOptions};

/// Scale and zero point of one quantized activation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActivationParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// The quantization of an activation with `range`.
pub(crate) fn activation_params(range: Range, kind: ActivationType) -> ActivationParams {
    match kind {
        ActivationType::Int8 => {
            let scale = if range.threshold > 0.0 {
                range.threshold / 127.0
            } else {
                1.0
            };
            ActivationParams {
                scale,
                zero_point: 0,
            }
        }
        ActivationType::Uint8 => {
            let lo = range.min.min(0.0);
            let hi = range.max.max(0.0);
            if hi - lo <= 0.0 {
                return ActivationParams {
                    scale: 1.0,
                    zero_point: 0,
                };
            }
            let scale = (hi - lo) / 255.0;
            let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as i32;
            ActivationParams { scale, zero_point }
        }
    }
}

/// Symmetric int8 weights in `-limit..=limit` (127, or 63 for reduced range): `(values,
/// scales)` with one scale per slice along `axis`, or one in all when `per_channel` is false.
pub(crate) fn quantize_weight(
    values: &[f32],
    dims: &[usize],
    axis: usize,
    per_channel: bool,
    limit: f32,
) -> (Vec<i8>, Vec<f32>) {
    let channels = if per_channel { dims[axis] } else { 1 };
    let inner: usize = if per_channel {
        dims[axis + 1..].iter().product()
    } else {
        values.len()
    };
    let channel_of = |i: usize| (i / inner) % channels;
    let mut peak = vec![0f32; channels];
    for (i, v) in values.iter().enumerate() {
        let c = channel_of(i);
        peak[c] = peak[c].max(v.abs());
    }
    let scales: Vec<f32> = peak
        .iter()
        .map(|&p| if p > 0.0 { p / limit } else { 1.0 })
        .collect();
    let q = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel_of(i)]).round().clamp(-limit, limit) as i8)
        .collect();
    (q, scales)
}

/// Unique tensor and node names.
struct Names(HashSet<String>);

impl Names {
    fn fresh(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 1;
        while !self.0.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }
}

/// Builds the QDQ model.
pub(crate) fn rewrite(
    model: &pb::ModelProto,
    index: &GraphIndex<'_>,
    plan: &Plan,
    ranges: &HashMap<String, Range>,
    options: &QuantizeOptions,
) -> Result<pb::ModelProto, QuantizeError> {
    let graph = index.graph;
    let mut names = Names(
        graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().chain(std::iter::once(&n.name)))
            .chain(graph.initializer.iter().map(|t| &t.name))
            .chain(graph.input.iter().map(|i| &i.name))
            .cloned()
            .collect(),
    );
    let mut initializers: Vec<pb::TensorProto> = Vec::new();
    let mut head_nodes: Vec<pb::NodeProto> = Vec::new();
    let zp_type = match options.activations {
        ActivationType::Int8 => dtype::INT8,
        ActivationType::Uint8 => dtype::UINT8,
    };

    // Activation Q/DQ pairs: tensor -> (params, dequantized name, the two nodes).
    let mut pairs: HashMap<String, (ActivationParams, String, [pb::NodeProto; 2])> = HashMap::new();
    for tensor in plan.activation_tensors(index) {
        let range = ranges.get(&tensor).copied().ok_or_else(|| {
            QuantizeError::BadModel(format!("no calibration range for {tensor:?}"))
        })?;
        let params = activation_params(range, options.activations);
        let scale = names.fresh(format!("{tensor}_scale"));
        let zero = names.fresh(format!("{tensor}_zero_point"));
        initializers.push(graph::f32_tensor(&scale, &[], &[params.scale]));
        initializers.push(graph::tensor(
            &zero,
            &[],
            zp_type,
            vec![params.zero_point as u8],
        ));
        let quantized = names.fresh(format!("{tensor}_quantized"));
        let dequantized = names.fresh(format!("{tensor}_dequantized"));
        let q = graph::node(
            "QuantizeLinear",
            names.fresh(format!("{tensor}_QuantizeLinear")),
            vec![tensor.clone(), scale.clone(), zero.clone()],
            quantized.clone(),
            None,
        );
        let dq = graph::node(
            "DequantizeLinear",
            names.fresh(format!("{tensor}_DequantizeLinear")),
            vec![quantized, scale, zero],
            dequantized.clone(),
            None,
        );
        pairs.insert(tensor, (params, dequantized, [q, dq]));
    }
    let quantized_outputs = plan.quantized_outputs(index);
    let by_node = plan.by_node();

    // Weights, shared between nodes that read the same initializer.
    let mut weights: HashMap<String, (String, Vec<f32>)> = HashMap::new();
    let mut nodes: Vec<pb::NodeProto> = Vec::with_capacity(graph.node.len() * 2);
    let mut emitted: HashSet<String> = HashSet::new();
    let mut emit_pair = |tensor: &str, out: &mut Vec<pb::NodeProto>| {
        if let Some((_, _, [q, dq])) = pairs.get(tensor) {
            if emitted.insert(tensor.to_string()) {
                out.push(q.clone());
                out.push(dq.clone());
            }
        }
    };
    for input in &index.inputs {
        emit_pair(input, &mut head_nodes);
    }
    for (i, original) in graph.node.iter().enumerate() {
        let mut node = original.clone();
        // Inputs that are quantized outputs of another node: every consumer reads the pair.
        for input in node.input.iter_mut() {
            if quantized_outputs.contains(input.as_str()) {
                if let Some((_, dq, _)) = pairs.get(input.as_str()) {
                    *input = dq.clone();
                }
            }
        }
        if let Some(w) = by_node.get(&i) {
            let act = &original.input[w.activation];
            let (params, dq, _) = pairs.get(act).ok_or_else(|| {
                QuantizeError::BadModel(format!("no activation pair for {act:?}"))
            })?;
            node.input[w.activation] = dq.clone();

            let weight_name = &original.input[w.weight];
            if !weights.contains_key(weight_name) {
                let (values, dims) = index.float_initializer(weight_name).ok_or_else(|| {
                    QuantizeError::BadModel(format!("weight {weight_name:?} is not readable"))
                })?;
                let limit = if options.reduce_range { 63.0 } else { 127.0 };
                let (q, scales) =
                    quantize_weight(&values, &dims, w.channel_axis, options.per_channel, limit);
                let q_name = names.fresh(format!("{weight_name}_quantized"));
                let s_name = names.fresh(format!("{weight_name}_scale"));
                let z_name = names.fresh(format!("{weight_name}_zero_point"));
                let dq_name = names.fresh(format!("{weight_name}_dequantized"));
                let scale_dims: Vec<usize> = if options.per_channel {
                    vec![scales.len()]
                } else {
                    vec![]
                };
                initializers.push(graph::tensor(
                    &q_name,
                    &dims,
                    dtype::INT8,
                    q.iter().map(|&v| v as u8).collect(),
                ));
                initializers.push(graph::f32_tensor(&s_name, &scale_dims, &scales));
                initializers.push(graph::tensor(
                    &z_name,
                    &scale_dims,
                    dtype::INT8,
                    vec![0; scales.len()],
                ));
                head_nodes.push(graph::node(
                    "DequantizeLinear",
                    names.fresh(format!("{weight_name}_DequantizeLinear")),
                    vec![q_name, s_name, z_name],
                    dq_name.clone(),
                    options.per_channel.then_some(w.channel_axis as i64),
                ));
                weights.insert(weight_name.clone(), (dq_name, scales));
            }
            let (weight_dq, weight_scales) = &weights[weight_name];
            node.input[w.weight] = weight_dq.clone();

            if let Some(b) = w.bias {
                let bias_name = &original.input[b];
                if let Some((values, _)) = index.float_initializer(bias_name) {
                    let scales: Vec<f32> = if weight_scales.len() == 1 {
                        vec![params.scale * weight_scales[0]; values.len()]
                    } else {
                        weight_scales.iter().map(|s| params.scale * s).collect()
                    };
                    if scales.len() == values.len()
                        && scales.iter().all(|s| s.is_finite() && *s > 0.0)
                    {
                        let q: Vec<u8> = values
                            .iter()
                            .zip(&scales)
                            .map(|(v, s)| {
                                let q = (f64::from(*v) / f64::from(*s)).round();
                                q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
                            })
                            .flat_map(i32::to_le_bytes)
                            .collect();
                        let node_name = index.node_name(i);
                        let q_name = names.fresh(format!("{bias_name}_{node_name}_quantized"));
                        let s_name = names.fresh(format!("{bias_name}_{node_name}_scale"));
                        let z_name = names.fresh(format!("{bias_name}_{node_name}_zero_point"));
                        let dq_name = names.fresh(format!("{bias_name}_{node_name}_dequantized"));
                        let n = values.len();
                        initializers.push(graph::tensor(&q_name, &[n], dtype::INT32, q));
                        initializers.push(graph::f32_tensor(&s_name, &[n], &scales));
                        initializers.push(graph::tensor(
                            &z_name,
                            &[n],
                            dtype::INT32,
                            vec![0; n * 4],
                        ));
                        head_nodes.push(graph::node(
                            "DequantizeLinear",
                            names.fresh(format!("{bias_name}_{node_name}_DequantizeLinear")),
                            vec![q_name, s_name, z_name],
                            dq_name.clone(),
                            Some(0),
                        ));
                        node.input[b] = dq_name;
                    }
                }
            }
        }
        let outputs = node.output.clone();
        nodes.push(node);
        for out in &outputs {
            emit_pair(out, &mut nodes);
        }
    }
    // Inputs of quantized nodes that other (float) nodes produce were emitted after their
    // producer above; graph inputs at the head.
    let mut all_nodes = head_nodes;
    all_nodes.extend(nodes);

    // Keep the float initializers still read by some node.
    let read: HashSet<String> = all_nodes
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    let mut new_graph = graph.clone();
    new_graph.node = all_nodes;
    new_graph.initializer.retain(|t| read.contains(&t.name));
    new_graph.initializer.extend(initializers);
    // Graph inputs that were (legacy) initializer declarations and are gone.
    let kept: HashSet<String> = new_graph
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let original_inits: HashSet<&str> = index.initializers.keys().copied().collect();
    new_graph
        .input
        .retain(|i| !original_inits.contains(i.name.as_str()) || kept.contains(&i.name));

    let mut out = model.clone();
    out.graph = Some(new_graph);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_weights_use_each_channels_peak() {
        // Two output channels (axis 0) of two values each.
        let (q, s) = quantize_weight(&[1.0, -0.5, 4.0, 1.0], &[2, 2], 0, true, 127.0);
        assert_eq!(s, vec![1.0 / 127.0, 4.0 / 127.0]);
        assert_eq!(q, vec![127, -64, 127, 32]);
        // Along axis 1 of a [K, N] matrix: columns.
        let (q, s) = quantize_weight(&[1.0, 0.1, -1.0, 0.05], &[2, 2], 1, true, 127.0);
        assert_eq!(s, vec![1.0 / 127.0, 0.1 / 127.0]);
        assert_eq!(q, vec![127, 127, -127, 64]);
    }

    #[test]
    fn per_tensor_weights_share_one_scale() {
        let (q, s) = quantize_weight(&[2.0, -1.0, 0.0, 0.5], &[2, 2], 0, false, 127.0);
        assert_eq!(s, vec![2.0 / 127.0]);
        assert_eq!(q, vec![127, -64, 0, 32]);
    }

    #[test]
    fn activation_params_cover_the_range() {
        let r = Range {
            min: -1.0,
            max: 3.0,
            threshold: 3.0,
        };
        let s = activation_params(r, ActivationType::Int8);
        assert_eq!((s.scale, s.zero_point), (3.0 / 127.0, 0));
        let u = activation_params(r, ActivationType::Uint8);
        assert!((u.scale - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(u.zero_point, 64);
        let nonneg = Range {
            min: 0.5,
            max: 2.0,
            threshold: 2.0,
        };
        assert_eq!(
            activation_params(nonneg, ActivationType::Uint8).zero_point,
            0
        );
    }
}
