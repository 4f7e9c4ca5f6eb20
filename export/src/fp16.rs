//! Float16 conversion of an exported ONNX file, for GPU backends: weights and arithmetic in
//! fp16, graph inputs and outputs kept float32 with `Cast` nodes at the edges, and float32
//! islands for the nodes that must not run in fp16.
//!
//! Kept in float32: the nodes the caller names (for example those whose outputs exceed the fp16
//! range on real data, see [`overflowing_nodes`]), and the float inputs ONNX requires in float32
//! whatever the data type (`Resize`'s `roi` and `scales`). Values outside the fp16 range are
//! clamped to ±65504 when initializers are converted.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb;

use crate::quantize::{CalibrationData, Feeds, QuantizeError};

const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;
/// Largest finite fp16 value.
pub const FP16_MAX: f32 = 65504.0;

/// Converts `model` (float32) to float16. `keep_fp32` lists node names left in float32.
/// The `prism` metadata gets `"precision": "fp16"`.
pub fn to_fp16(
    model: &pb::ModelProto,
    keep_fp32: &HashSet<String>,
) -> Result<pb::ModelProto, QuantizeError> {
    let mut model = model.clone();
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| QuantizeError::BadModel("the file holds no graph".into()))?;
    if graph.initializer.iter().any(|t| t.data_type == FLOAT16)
        || graph.node.iter().any(|n| n.op_type == "QuantizeLinear")
    {
        return Err(QuantizeError::AlreadyQuantized(
            "it already holds float16 or quantized tensors".into(),
        ));
    }

    // Tensors that stay float32: graph inputs and outputs (cast at the edges), the outputs of
    // kept nodes, and initializers read only where ONNX requires float32.
    let mut fp32_only: HashSet<String> = HashSet::new();
    for node in &graph.node {
        if node.op_type == "Resize" {
            for input in node.input.iter().skip(1) {
                fp32_only.insert(input.clone());
            }
        }
    }
    let kept: HashSet<usize> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| keep_fp32.contains(&n.name))
        .map(|(i, _)| i)
        .collect();
    let float_inputs: Vec<String> = graph
        .input
        .iter()
        .filter(|i| elem_type(i) == Some(FLOAT))
        .map(|i| i.name.clone())
        .collect();
    let float_outputs: Vec<String> = graph
        .output
        .iter()
        .filter(|o| elem_type(o) == Some(FLOAT))
        .map(|o| o.name.clone())
        .collect();

    // Which tensors hold floats, from the original graph: before the initializers below are
    // converted, or a chain that starts at a weight (an SSM's `exp(log_decay)`) would not count.
    let floats = float_tensors(graph);

    // Initializers: float32 -> float16 unless only float32 readers use them.
    let mut readers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            readers.entry(input.clone()).or_default().push(i);
        }
    }
    let mut fp16_inits: HashSet<String> = HashSet::new();
    for t in &mut graph.initializer {
        if t.data_type != FLOAT || fp32_only.contains(&t.name) {
            continue;
        }
        let all_kept = readers
            .get(&t.name)
            .is_some_and(|r| r.iter().all(|i| kept.contains(i)));
        if all_kept {
            continue;
        }
        convert_tensor(t)?;
        fp16_inits.insert(t.name.clone());
    }

    // The new node list, with casts wherever a tensor crosses between fp16 and float32.
    let mut names: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .chain(graph.initializer.iter().map(|t| t.name.clone()))
        .chain(graph.input.iter().map(|i| i.name.clone()))
        .collect();
    let mut fresh = |base: String| {
        let mut name = base.clone();
        let mut k = 1;
        while !names.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    };
    let mut nodes = Vec::with_capacity(graph.node.len() + 16);
    // Tensors that are fp16 in the new graph.
    let mut half: HashSet<String> = fp16_inits.clone();
    // float32 tensor -> its fp16 twin, and fp16 tensor -> its float32 twin.
    let mut half_of: HashMap<String, String> = HashMap::new();
    let mut full_of: HashMap<String, String> = HashMap::new();
    for input in &float_inputs {
        let twin = fresh(format!("{input}_fp16"));
        nodes.push(cast(fresh(format!("{input}_Cast")), input, &twin, FLOAT16));
        half.insert(twin.clone());
        half_of.insert(input.clone(), twin);
    }
    let graph_outputs: HashSet<String> = float_outputs.iter().cloned().collect();
    let original = std::mem::take(&mut graph.node);
    for (i, mut node) in original.into_iter().enumerate() {
        // Constants that feed float32-only inputs stay float32, like kept nodes.
        let is_kept = kept.contains(&i) || node.output.iter().any(|o| fp32_only.contains(o));
        if !is_kept {
            convert_attributes(&mut node)?;
        }
        for input in node.input.iter_mut() {
            if input.is_empty() || !floats.contains(input.as_str()) || fp32_only.contains(input) {
                continue;
            }
            let is_half = half.contains(input.as_str());
            if is_kept && is_half {
                let up = match full_of.get(input.as_str()) {
                    Some(up) => up.clone(),
                    None => {
                        let up = fresh(format!("{input}_fp32"));
                        nodes.push(cast(fresh(format!("{input}_CastUp")), input, &up, FLOAT));
                        full_of.insert(input.clone(), up.clone());
                        up
                    }
                };
                *input = up;
            } else if !is_kept && !is_half {
                let down = match half_of.get(input.as_str()) {
                    Some(down) => down.clone(),
                    None => {
                        let down = fresh(format!("{input}_fp16"));
                        nodes.push(cast(
                            fresh(format!("{input}_CastDown")),
                            input,
                            &down,
                            FLOAT16,
                        ));
                        half.insert(down.clone());
                        half_of.insert(input.clone(), down.clone());
                        down
                    }
                };
                *input = down;
            }
        }
        let mut after = Vec::new();
        if !is_kept {
            for out in node.output.iter_mut() {
                if !floats.contains(out.as_str()) {
                    continue;
                }
                if graph_outputs.contains(out.as_str()) {
                    // The graph output stays float32: write an fp16 twin, cast it up after.
                    let twin = fresh(format!("{out}_fp16"));
                    after.push(cast(fresh(format!("{out}_CastOut")), &twin, out, FLOAT));
                    half.insert(twin.clone());
                    *out = twin;
                } else {
                    half.insert(out.clone());
                }
            }
        }
        nodes.push(node);
        nodes.extend(after);
    }
    graph.node = nodes;
    // Intermediate type annotations would now be wrong; tools re-infer them.
    graph.value_info.clear();
    set_precision(&mut model)?;
    Ok(model)
}

/// Converts the float data a node carries in attributes: `Constant` and `ConstantOfShape`
/// values, and `Cast` targets.
fn convert_attributes(node: &mut pb::NodeProto) -> Result<(), QuantizeError> {
    for attr in &mut node.attribute {
        match (node.op_type.as_str(), attr.name.as_str()) {
            ("Constant" | "ConstantOfShape", "value") => {
                if let Some(t) = attr.t.as_mut().filter(|t| t.data_type == FLOAT) {
                    convert_tensor(t)?;
                }
            }
            ("Cast", "to") if attr.i == i64::from(FLOAT) => attr.i = i64::from(FLOAT16),
            _ => {}
        }
    }
    Ok(())
}

/// The tensors of `graph` holding float32 values: float graph inputs and initializers, and
/// node outputs by a forward pass over the op types prism's exports use (an output has its
/// first input's type, except for ops whose output type is fixed).
fn float_tensors(graph: &pb::GraphProto) -> HashSet<String> {
    let mut floats: HashSet<String> = graph
        .input
        .iter()
        .filter(|i| elem_type(i) == Some(FLOAT))
        .map(|i| i.name.clone())
        .chain(
            graph
                .initializer
                .iter()
                .filter(|t| t.data_type == FLOAT)
                .map(|t| t.name.clone()),
        )
        .collect();
    for node in &graph.node {
        let attr_tensor_float = || {
            node.attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_ref())
                .map_or(node.op_type == "ConstantOfShape", |t| t.data_type == FLOAT)
        };
        let is_float = match node.op_type.as_str() {
            "Shape" | "Size" | "ArgMax" | "ArgMin" | "NonZero" | "Equal" | "Less" | "Greater"
            | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And" | "Or" | "IsNaN" | "IsInf" => false,
            "Cast" => node
                .attribute
                .iter()
                .any(|a| a.name == "to" && a.i == i64::from(FLOAT)),
            "Constant" | "ConstantOfShape" => attr_tensor_float(),
            "Where" => node.input.get(1).is_some_and(|i| floats.contains(i)),
            _ => node.input.first().is_some_and(|i| floats.contains(i)),
        };
        if is_float {
            // TopK / Dropout-style second outputs are indices or masks: only the first.
            if let Some(first) = node.output.first() {
                floats.insert(first.clone());
            }
            if !matches!(node.op_type.as_str(), "TopK" | "Dropout" | "MaxPool") {
                floats.extend(node.output.iter().skip(1).cloned());
            }
        }
    }
    floats
}

/// Nodes whose float outputs exceed `limit` in magnitude on `data` (run in float32 in tract):
/// in fp16 they would overflow. `limit` below [`FP16_MAX`] leaves headroom (a quarter of it is
/// a common choice).
pub fn overflowing_nodes(
    model: &pb::ModelProto,
    feeds: &Feeds,
    data: &mut dyn CalibrationData,
    limit: f32,
) -> Result<Vec<String>, QuantizeError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| QuantizeError::BadModel("the file holds no graph".into()))?;
    let mut tensors = Vec::new();
    let mut owners = Vec::new();
    let ints: HashSet<&str> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type != FLOAT)
        .map(|t| t.name.as_str())
        .collect();
    for node in &graph.node {
        if matches!(
            node.op_type.as_str(),
            "Shape" | "Constant" | "ConstantOfShape"
        ) || node.input.iter().all(|i| ints.contains(i.as_str()))
        {
            continue;
        }
        for out in &node.output {
            tensors.push(out.clone());
            owners.push(node.name.clone());
        }
    }
    let mut observer = crate::quantize::Observer::new(model, feeds, &tensors, "float")?;
    let mut peak = vec![0f32; tensors.len()];
    observer.stream(
        data,
        crate::quantize::Pass::Calibrate,
        &mut |_, _, _| {},
        &mut |k, values| {
            for v in values {
                peak[k] = peak[k].max(v.abs());
            }
        },
    )?;
    let mut out: Vec<String> = owners
        .into_iter()
        .zip(peak)
        .filter(|(_, p)| !p.is_finite() || *p > limit)
        .map(|(n, _)| n)
        .collect();
    out.dedup();
    Ok(out)
}

fn elem_type(v: &pb::ValueInfoProto) -> Option<i32> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(t.elem_type)
}

fn cast(name: String, input: &str, output: &str, to: i32) -> pb::NodeProto {
    pb::NodeProto {
        op_type: "Cast".into(),
        name,
        input: vec![input.to_string()],
        output: vec![output.to_string()],
        attribute: vec![pb::AttributeProto {
            name: "to".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: i64::from(to),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// float32 tensor data -> float16 (clamped to the fp16 range), in place.
fn convert_tensor(t: &mut pb::TensorProto) -> Result<(), QuantizeError> {
    if !t.external_data.is_empty() {
        return Err(QuantizeError::BadModel(format!(
            "initializer {:?} is stored outside the file",
            t.name
        )));
    }
    let values: Vec<f32> = if t.raw_data.is_empty() {
        std::mem::take(&mut t.float_data)
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    t.raw_data = values
        .iter()
        .flat_map(|&v| {
            let v = if v.is_finite() {
                v.clamp(-FP16_MAX, FP16_MAX)
            } else {
                v
            };
            half::f16::from_f32(v).to_le_bytes()
        })
        .collect();
    t.float_data.clear();
    t.data_type = FLOAT16;
    Ok(())
}

fn set_precision(model: &mut pb::ModelProto) -> Result<(), QuantizeError> {
    for entry in &mut model.metadata_props {
        if entry.key == crate::quantize::METADATA_KEY {
            let mut meta: serde_json::Value = serde_json::from_str(&entry.value)
                .map_err(|e| QuantizeError::BadModel(format!("the `prism` metadata: {e}")))?;
            if let Some(obj) = meta.as_object_mut() {
                obj.insert("precision".into(), "fp16".into());
            }
            entry.value = meta.to_string();
        }
    }
    Ok(())
}
