//! Lookups over an ONNX graph: initializers by name, the producer and consumers of each tensor,
//! and the float data of initializers.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb;

use super::QuantizeError;

/// `TensorProto.DataType` values the quantizer reads and writes.
pub(crate) mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const INT32: i32 = 6;
}

/// Index of one graph.
pub(crate) struct GraphIndex<'g> {
    pub graph: &'g pb::GraphProto,
    pub initializers: HashMap<&'g str, &'g pb::TensorProto>,
    /// Tensor name -> index of the node writing it.
    pub producer: HashMap<&'g str, usize>,
    /// Tensor name -> indices of the nodes reading it.
    pub consumers: HashMap<&'g str, Vec<usize>>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<&'g str>,
    /// Graph outputs.
    pub outputs: HashSet<&'g str>,
}

impl<'g> GraphIndex<'g> {
    pub fn new(graph: &'g pb::GraphProto) -> Result<Self, QuantizeError> {
        let initializers: HashMap<&str, &pb::TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                if producer.insert(out.as_str(), i).is_some() {
                    return Err(QuantizeError::BadModel(format!(
                        "tensor {out:?} is written by two nodes"
                    )));
                }
            }
            for input in node.input.iter().filter(|i| !i.is_empty()) {
                consumers.entry(input.as_str()).or_default().push(i);
            }
        }
        let inputs = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !initializers.contains_key(n))
            .collect();
        let outputs = graph.output.iter().map(|o| o.name.as_str()).collect();
        Ok(Self {
            graph,
            initializers,
            producer,
            consumers,
            inputs,
            outputs,
        })
    }

    pub fn node(&self, i: usize) -> &'g pb::NodeProto {
        &self.graph.node[i]
    }

    /// A node's name, or `op_type#index` when it has none.
    pub fn node_name(&self, i: usize) -> String {
        let node = self.node(i);
        if node.name.is_empty() {
            format!("{}#{i}", node.op_type)
        } else {
            node.name.clone()
        }
    }

    /// The consumers of `tensor` (none for a dangling tensor).
    pub fn consumers_of(&self, tensor: &str) -> &[usize] {
        self.consumers.get(tensor).map_or(&[], Vec::as_slice)
    }

    /// The float32 initializer `name`, as values and dims.
    pub fn float_initializer(&self, name: &str) -> Option<(Vec<f32>, Vec<usize>)> {
        let t = self.initializers.get(name)?;
        if t.data_type != dtype::FLOAT || !t.external_data.is_empty() {
            return None;
        }
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<_>>()?;
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if !t.raw_data.is_empty() {
            if t.raw_data.len() != n * 4 {
                return None;
            }
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        } else {
            if t.float_data.len() != n {
                return None;
            }
            t.float_data.clone()
        };
        Some((values, dims))
    }
}

/// An initializer tensor with raw little-endian data.
pub(crate) fn tensor(name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type,
        raw_data: raw,
        ..Default::default()
    }
}

/// A float32 initializer.
pub(crate) fn f32_tensor(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    tensor(
        name,
        dims,
        dtype::FLOAT,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// A node with an optional integer `axis` attribute.
pub(crate) fn node(
    op: &str,
    name: String,
    inputs: Vec<String>,
    output: String,
    axis: Option<i64>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.to_string(),
        name,
        input: inputs,
        output: vec![output],
        attribute: axis
            .map(|a| pb::AttributeProto {
                name: "axis".into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: a,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}
