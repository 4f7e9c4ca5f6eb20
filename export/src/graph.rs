//! ONNX graph builder: unique value names, nodes, and initializers stored once.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use burn::tensor::{DType, TensorData};

use crate::error::{ExportError, Result};
use crate::proto::{data_type, Attribute, NodeProto, RawData, TensorProto};

/// ONNX element type for a Burn dtype.
pub(crate) fn onnx_type(dtype: DType) -> Result<i32> {
    Ok(match dtype {
        DType::F64 => data_type::DOUBLE,
        DType::F32 | DType::Flex32 => data_type::FLOAT,
        DType::F16 => data_type::FLOAT16,
        DType::BF16 => data_type::BFLOAT16,
        DType::I64 => data_type::INT64,
        DType::I32 => data_type::INT32,
        DType::I16 => data_type::INT16,
        DType::I8 => data_type::INT8,
        DType::U64 => data_type::UINT64,
        DType::U32 => data_type::UINT32,
        DType::U16 => data_type::UINT16,
        DType::U8 => data_type::UINT8,
        DType::Bool(_) => data_type::BOOL,
        other => {
            return Err(ExportError::Options(format!(
                "dtype {other:?} has no ONNX equivalent"
            )))
        }
    })
}

/// Builds the node list and initializer table of one ONNX graph.
#[derive(Debug, Default)]
pub(crate) struct GraphBuilder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    used_names: HashSet<String>,
    /// Content hash → initializer indices, to store identical tensors once.
    by_content: HashMap<u64, Vec<usize>>,
    counter: usize,
    /// Static shapes of named values (`-1`: symbolic axis), for the ONNX-level rewrites.
    pub shapes: HashMap<String, Vec<i64>>,
}

impl GraphBuilder {
    /// A fresh value name starting with `hint`, unique in the graph.
    pub fn fresh(&mut self, hint: &str) -> String {
        let hint = sanitize(hint);
        if self.used_names.insert(hint.clone()) {
            return hint;
        }
        loop {
            self.counter += 1;
            let name = format!("{hint}_{}", self.counter);
            if self.used_names.insert(name.clone()) {
                return name;
            }
        }
    }

    /// Reserve an exact name (graph inputs and outputs); errors when already taken.
    pub fn reserve(&mut self, name: &str) -> Result<()> {
        if self.used_names.insert(name.to_string()) {
            Ok(())
        } else {
            Err(ExportError::Options(format!(
                "value name `{name}` is used twice"
            )))
        }
    }

    /// Append a node.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attribute: Vec<Attribute>,
        doc: &str,
    ) {
        let name = self.fresh(&format!("{op_type}_{}", self.nodes.len()));
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            name,
            op_type: op_type.to_string(),
            attribute,
            doc_string: doc.to_string(),
        });
    }

    /// Add an initializer from raw bytes, reusing an existing one with identical type, shape
    /// and content. Returns the name to reference.
    pub fn initializer(&mut self, hint: &str, dims: Vec<i64>, elem: i32, raw: RawData) -> String {
        let key = {
            let mut h = DefaultHasher::new();
            elem.hash(&mut h);
            dims.hash(&mut h);
            raw.as_bytes().hash(&mut h);
            h.finish()
        };
        if let Some(indices) = self.by_content.get(&key) {
            for &i in indices {
                let t = &self.initializers[i];
                if t.data_type == elem && t.dims == dims && t.raw_data.as_bytes() == raw.as_bytes()
                {
                    return t.name.clone();
                }
            }
        }
        let name = self.fresh(hint);
        self.by_content
            .entry(key)
            .or_default()
            .push(self.initializers.len());
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims,
            data_type: elem,
            raw_data: raw,
        });
        name
    }

    /// Add a Burn tensor as an initializer without copying its bytes.
    pub fn tensor_initializer(&mut self, hint: &str, data: TensorData) -> Result<String> {
        let dims = data.shape().iter().map(|d| *d as i64).collect();
        let elem = onnx_type(data.dtype())?;
        let raw = match data.dtype() {
            // Bool storage other than one byte per element is converted to ONNX's layout.
            DType::Bool(_) if data.as_bytes().len() != data.num_elements() => {
                let values: Vec<bool> = data
                    .try_to_vec::<bool>()
                    .map_err(|e| ExportError::Options(format!("bool tensor: {e:?}")))?;
                RawData::Bytes(values.into_iter().map(u8::from).collect())
            }
            _ => RawData::Burn(data),
        };
        Ok(self.initializer(hint, dims, elem, raw))
    }

    /// A 1-D int64 constant.
    pub fn const_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(
            hint,
            vec![values.len() as i64],
            data_type::INT64,
            RawData::Bytes(raw),
        )
    }

    /// A scalar (0-d) constant of the given ONNX type from little-endian bytes.
    pub fn const_scalar(&mut self, hint: &str, elem: i32, bytes: Vec<u8>) -> String {
        self.initializer(hint, vec![], elem, RawData::Bytes(bytes))
    }
}

/// Keep names readable and safe for every runtime: `[A-Za-z0-9_.:/-]`.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.:/-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "v".into()
    } else {
        s
    }
}
