//! Lowering of Burn IR operations to ONNX nodes, one file per operation family.
//!
//! [`Lowerer`] walks the captured operations in order. Values known at export time (weights,
//! constants created in the forward pass) stay on the host until a node reads them, so that
//! operations on constants are folded (see [`crate::optimize`]) and only what the graph needs
//! becomes an initializer.

mod activation;
mod elementwise;
mod nn;
mod reduce;
mod shape;

pub(crate) use shape::onnx_slice;

use std::collections::{HashMap, HashSet};

use burn::backend::capture::TensorId;
use burn::backend::ir::{OperationIr, ScalarIr, TensorIr};
use burn::tensor::{DType, TensorData};

use crate::dynamic::{SymDim, Symbolic};
use crate::error::{ExportError, Result};
use crate::graph::{onnx_type, GraphBuilder};
use crate::optimize;
use crate::proto::{data_type, Attribute, AttributeValue, RawData, TensorProto};

/// Short readable label of an IR operation, e.g. `NumericFloat.Add`.
pub(crate) fn op_label(op: &OperationIr) -> String {
    let debug = format!("{op:?}");
    let head = debug.split('{').next().unwrap_or("");
    let idents: Vec<&str> = head
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|s| !s.is_empty())
        .collect();
    let keep: Vec<&str> = idents
        .iter()
        .take(idents.len().saturating_sub(1).max(1))
        .copied()
        .filter(|s| !is_dtype_token(s))
        .collect();
    keep.join(".")
}

fn is_dtype_token(s: &str) -> bool {
    matches!(
        s,
        "F64"
            | "F32"
            | "Flex32"
            | "F16"
            | "BF16"
            | "I64"
            | "I32"
            | "I16"
            | "I8"
            | "U64"
            | "U32"
            | "U16"
            | "U8"
            | "Native"
    )
}

/// State of one lowering pass.
pub(crate) struct Lowerer {
    pub g: GraphBuilder,
    pub opset: i64,
    /// ONNX value name of every tensor that has one.
    names: HashMap<TensorId, String>,
    /// Values known at export time and not materialized yet.
    consts: HashMap<TensorId, TensorData>,
    /// Remaining reads of each tensor, to drop folded constants early.
    uses: HashMap<TensorId, usize>,
    /// Module paths of parameters, for initializer names and error context.
    param_names: HashMap<TensorId, String>,
    /// Names requested for graph outputs.
    output_names: HashMap<TensorId, String>,
    /// Graph output names already given to a node output.
    outputs_taken: HashSet<String>,
    /// Dynamic batch information, when requested.
    pub sym: Option<Symbolic>,
    /// The `[batch]` int64 tensor, built once from a graph input when first needed.
    batch_value: Option<String>,
    runtime_inputs: Vec<(TensorId, String)>,
    /// Export-local numbers of tensors, in the order they are first named: value names carry
    /// these instead of capture IDs, which depend on what else the process captured, so the
    /// same module always exports to the same bytes.
    local_ids: HashMap<TensorId, usize>,
    // Current operation, for error messages and node docs.
    index: usize,
    label: String,
    context: String,
}

impl Lowerer {
    pub fn new(
        opset: i64,
        values: std::collections::BTreeMap<TensorId, TensorData>,
        param_names: HashMap<TensorId, String>,
        inputs: &[(TensorId, String)],
        outputs: &[(TensorId, String)],
        sym: Option<Symbolic>,
        operations: &[OperationIr],
    ) -> Result<Self> {
        let mut g = GraphBuilder::default();
        let mut names = HashMap::new();
        for (id, name) in inputs {
            g.reserve(name)?;
            names.insert(*id, name.clone());
        }
        let mut output_names = HashMap::new();
        for (id, name) in outputs {
            g.reserve(name)?;
            output_names.insert(*id, name.clone());
        }
        let input_ids: HashSet<_> = inputs.iter().map(|(id, _)| *id).collect();
        let consts = values
            .into_iter()
            .filter(|(id, _)| !input_ids.contains(id))
            .collect();
        let mut uses = HashMap::new();
        for op in operations {
            for t in op.inputs() {
                *uses.entry(t.id).or_insert(0) += 1;
            }
        }
        for (id, _) in outputs {
            *uses.entry(*id).or_insert(0) += 1;
        }
        Ok(Self {
            g,
            opset,
            names,
            consts,
            uses,
            param_names,
            output_names,
            outputs_taken: HashSet::new(),
            sym,
            batch_value: None,
            runtime_inputs: inputs.to_vec(),
            local_ids: HashMap::new(),
            index: 0,
            label: String::new(),
            context: String::new(),
        })
    }

    /// Lower every operation in order.
    pub fn lower_all(&mut self, operations: &[OperationIr]) -> Result<()> {
        for (index, op) in operations.iter().enumerate() {
            self.index = index;
            self.label = op_label(op);
            let params: Vec<&str> = op
                .inputs()
                .filter_map(|t| self.param_names.get(&t.id).map(String::as_str))
                .collect();
            self.context = if params.is_empty() {
                String::new()
            } else {
                format!(" reading {}", params.join(", "))
            };
            let foldable = op.inputs().all(|t| self.consts.contains_key(&t.id));
            let folded = if foldable {
                optimize::fold(op, &self.consts, self.opset)
            } else {
                None
            };
            match folded {
                Some(results) => {
                    for (id, data) in results {
                        self.consts.insert(id, data);
                    }
                }
                None => self.lower(op)?,
            }
            for t in op.inputs() {
                if let Some(n) = self.uses.get_mut(&t.id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.consts.remove(&t.id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Give every graph output its requested name, inserting `Identity` only where the value
    /// already has another name (an input, another output, or an aliased value).
    pub fn finish_outputs(&mut self, outputs: &[(TensorId, String)]) -> Result<()> {
        self.label = "output".into();
        for (id, name) in outputs {
            let tensor = TensorIr::uninit(*id, burn::tensor::Shape::new([0usize; 0]), DType::F32);
            let current = self.input(&tensor)?;
            if &current != name {
                self.g.node(
                    "Identity",
                    vec![current],
                    vec![name.clone()],
                    vec![],
                    "graph output",
                );
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, op: &OperationIr) -> Result<()> {
        match op {
            OperationIr::BaseFloat(b) | OperationIr::BaseInt(b) | OperationIr::BaseBool(b) => {
                self.base(b)
            }
            OperationIr::NumericFloat(_, n) | OperationIr::NumericInt(_, n) => self.numeric(n),
            OperationIr::Float(_, f) => self.float(f),
            OperationIr::Int(i) => self.int(i),
            OperationIr::Bool(b) => self.bool_op(b),
            OperationIr::Module(m) => self.module(m),
            OperationIr::Activation(a) => self.activation(a),
            OperationIr::Init(_) | OperationIr::Drop(_) => Ok(()),
            OperationIr::Custom(c) => {
                Err(self.unsupported(&format!("custom operation `{}`", c.id)))
            }
            OperationIr::Distributed(_) => Err(self.unsupported("distributed operations")),
        }
    }

    fn lower(&mut self, op: &OperationIr) -> Result<()> {
        self.dispatch(op)
    }

    // ---- helpers shared by the families -------------------------------------------------

    /// An error naming the current operation.
    pub fn unsupported(&self, reason: &str) -> ExportError {
        ExportError::Unsupported {
            index: self.index,
            op: self.label.clone(),
            context: self.context.clone(),
            reason: reason.to_string(),
        }
    }

    /// The ONNX name of a tensor read by a node; constants become initializers on first use.
    pub fn input(&mut self, t: &TensorIr) -> Result<String> {
        if let Some(name) = self.names.get(&t.id) {
            return Ok(name.clone());
        }
        // Moved, not copied: once a value has a name, later reads use the name.
        let Some(data) = self.consts.remove(&t.id) else {
            return Err(self.unsupported(&format!("reads tensor {} that was never produced", t.id)));
        };
        let name = self.materialize(t.id, data)?;
        self.names.insert(t.id, name.clone());
        Ok(name)
    }

    fn materialize(&mut self, id: TensorId, data: TensorData) -> Result<String> {
        let sym = self.sym_dims(id);
        let splat = optimize::splat_value(&data);
        let numel = data.num_elements();
        if let Some(value) = splat.filter(|_| numel > 16 || sym.iter().any(Option::is_some)) {
            // A large uniform constant (zeros, ones, full) is cheaper as ConstantOfShape, and
            // with a symbolic axis it has to be built from the runtime batch size.
            let dims: Vec<usize> = data.shape().to_vec();
            let shape = self.shape_value(&dims, &sym)?;
            let elem = onnx_type(data.dtype())?;
            let value = TensorProto {
                name: String::new(),
                dims: vec![1],
                data_type: elem,
                raw_data: RawData::Bytes(value),
            };
            let out = format!("const_{}", self.local_id(id));
            let out = self.g.fresh(&out);
            self.g.node(
                "ConstantOfShape",
                vec![shape],
                vec![out.clone()],
                vec![Attribute {
                    name: "value".into(),
                    value: AttributeValue::Tensor(Box::new(value)),
                }],
                &self.label,
            );
            return Ok(out);
        }
        if sym.iter().any(Option::is_some) {
            return Err(ExportError::Dynamic(format!(
                "constant {id} created in the forward pass has a batch-dependent shape; \
                 derive it from the inputs instead (op #{} {})",
                self.index, self.label
            )));
        }
        let hint = match self.param_names.get(&id) {
            Some(name) => name.clone(),
            None => format!("const_{}", self.local_id(id)),
        };
        self.g.tensor_initializer(&hint, data)
    }

    /// The export-local number of a tensor (see `local_ids`).
    fn local_id(&mut self, id: TensorId) -> usize {
        let next = self.local_ids.len();
        *self.local_ids.entry(id).or_insert(next)
    }

    /// Name for a node output that is the IR tensor `t`.
    pub fn out_name(&mut self, t: &TensorIr, hint: &str) -> String {
        let name = match self.output_names.get(&t.id) {
            Some(name) if self.outputs_taken.insert(name.clone()) => name.clone(),
            _ => {
                let name = format!("{hint}_{}", self.local_id(t.id));
                self.g.fresh(&name)
            }
        };
        self.names.insert(t.id, name.clone());
        let sym = self.sym_dims(t.id);
        let dims = t
            .shape
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if sym.get(i).copied().flatten().is_some() {
                    -1
                } else {
                    *d as i64
                }
            })
            .collect();
        self.g.shapes.insert(name.clone(), dims);
        name
    }

    /// Emit one node producing the IR tensor `out`.
    pub fn emit(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        out: &TensorIr,
        attrs: Vec<Attribute>,
    ) {
        let name = self.out_name(out, &op_type.to_ascii_lowercase());
        let label = self.label.clone();
        self.g.node(op_type, inputs, vec![name], attrs, &label);
    }

    /// Emit one node producing a fresh intermediate value.
    pub fn tmp(&mut self, op_type: &str, inputs: Vec<String>, attrs: Vec<Attribute>) -> String {
        let name = self
            .g
            .fresh(&format!("{}_tmp", op_type.to_ascii_lowercase()));
        let label = self.label.clone();
        self.g
            .node(op_type, inputs, vec![name.clone()], attrs, &label);
        name
    }

    /// Make `out` another name for an existing value (no node).
    pub fn alias(&mut self, out: &TensorIr, value: String) {
        self.names.insert(out.id, value);
    }

    /// 1-D int64 constant.
    pub fn ints(&mut self, values: &[i64]) -> String {
        self.g.const_i64("ints", values)
    }

    /// 0-d constant holding `value` in `dtype`.
    pub fn scalar(&mut self, value: ScalarIr, dtype: DType) -> Result<String> {
        let (elem, bytes) = scalar_bytes(value, dtype)
            .ok_or_else(|| self.unsupported(&format!("scalar constant of dtype {dtype:?}")))?;
        Ok(self.g.const_scalar("scalar", elem, bytes))
    }

    /// 0-d float32 (or dtype) constant.
    pub fn scalar_f(&mut self, value: f64, dtype: DType) -> Result<String> {
        self.scalar(ScalarIr::Float(value), dtype)
    }

    /// Symbolic axes of a tensor (`None` = static), empty when dynamic batch is off.
    pub fn sym_dims(&self, id: TensorId) -> Vec<Option<SymDim>> {
        self.sym
            .as_ref()
            .and_then(|s| s.dims.get(&id).cloned())
            .unwrap_or_default()
    }

    /// Whether any axis of `t` depends on the batch size.
    pub fn is_dynamic(&self, t: &TensorIr) -> bool {
        self.sym_dims(t.id).iter().any(Option::is_some)
    }

    /// A 1-D int64 shape tensor for `dims`, computing symbolic entries from the batch size.
    pub fn shape_value(&mut self, dims: &[usize], sym: &[Option<SymDim>]) -> Result<String> {
        let statics: Vec<i64> = dims.iter().map(|d| *d as i64).collect();
        if sym.iter().all(Option::is_none) {
            return Ok(self.ints(&statics));
        }
        let mut parts = Vec::new();
        for (i, d) in statics.iter().enumerate() {
            match sym.get(i).copied().flatten() {
                None => parts.push(self.ints(&[*d])),
                Some(s) => {
                    let batch = self.batch()?;
                    let mut v = batch;
                    if s.a != 1 {
                        let a = self.ints(&[s.a]);
                        v = self.tmp("Mul", vec![v, a], vec![]);
                    }
                    if s.c != 0 {
                        let c = self.ints(&[s.c]);
                        v = self.tmp("Add", vec![v, c], vec![]);
                    }
                    parts.push(v);
                }
            }
        }
        Ok(self.tmp("Concat", parts, vec![Attribute::int("axis", 0)]))
    }

    /// The runtime batch size as a `[1]` int64 tensor.
    fn batch(&mut self) -> Result<String> {
        if let Some(b) = &self.batch_value {
            return Ok(b.clone());
        }
        let mut found = None;
        for (id, name) in &self.runtime_inputs {
            let dims = self.sym_dims(*id);
            if let Some(axis) = dims.iter().position(|d| *d == Some(SymDim { a: 1, c: 0 })) {
                found = Some((name.clone(), axis as i64));
                break;
            }
        }
        let Some((input, axis)) = found else {
            return Err(ExportError::Dynamic(
                "no graph input carries the batch axis".into(),
            ));
        };
        let b = self.tmp(
            "Shape",
            vec![input],
            vec![
                Attribute::int("start", axis),
                Attribute::int("end", axis + 1),
            ],
        );
        self.batch_value = Some(b.clone());
        Ok(b)
    }

    /// Cast `value` (of `from`) to `to` when they differ.
    pub fn cast(&mut self, value: String, from: DType, to: DType) -> Result<String> {
        if onnx_type(from)? == onnx_type(to)? {
            return Ok(value);
        }
        Ok(self.tmp(
            "Cast",
            vec![value],
            vec![Attribute::int("to", i64::from(onnx_type(to)?))],
        ))
    }

    /// ONNX element type of an IR tensor.
    pub fn elem(&self, t: &TensorIr) -> Result<i32> {
        onnx_type(t.dtype).map_err(|_| self.unsupported(&format!("dtype {:?}", t.dtype)))
    }
}

/// Little-endian bytes of a scalar converted to `dtype`.
pub(crate) fn scalar_bytes(value: ScalarIr, dtype: DType) -> Option<(i32, Vec<u8>)> {
    let f = match value {
        ScalarIr::Float(x) => x,
        ScalarIr::Int(x) => x as f64,
        ScalarIr::UInt(x) => x as f64,
        ScalarIr::Bool(b) => f64::from(u8::from(b)),
    };
    let i = match value {
        ScalarIr::Int(x) => x,
        ScalarIr::UInt(x) => x as i64,
        _ => f as i64,
    };
    Some(match dtype {
        DType::F32 | DType::Flex32 => (data_type::FLOAT, (f as f32).to_le_bytes().to_vec()),
        DType::F64 => (data_type::DOUBLE, f.to_le_bytes().to_vec()),
        DType::I64 => (data_type::INT64, i.to_le_bytes().to_vec()),
        DType::I32 => (data_type::INT32, (i as i32).to_le_bytes().to_vec()),
        DType::I16 => (data_type::INT16, (i as i16).to_le_bytes().to_vec()),
        DType::I8 => (data_type::INT8, (i as i8).to_le_bytes().to_vec()),
        DType::U64 => (data_type::UINT64, (i as u64).to_le_bytes().to_vec()),
        DType::U32 => (data_type::UINT32, (i as u32).to_le_bytes().to_vec()),
        DType::U16 => (data_type::UINT16, (i as u16).to_le_bytes().to_vec()),
        DType::U8 => (data_type::UINT8, vec![i as u8]),
        DType::Bool(_) => (data_type::BOOL, vec![u8::from(f != 0.0)]),
        _ => return None,
    })
}

/// Scalar as f64, for attributes.
pub(crate) fn scalar_f64(value: ScalarIr) -> f64 {
    match value {
        ScalarIr::Float(x) => x,
        ScalarIr::Int(x) => x as f64,
        ScalarIr::UInt(x) => x as f64,
        ScalarIr::Bool(b) => f64::from(u8::from(b)),
    }
}

/// Dimensions as i64.
pub(crate) fn dims_i64(t: &TensorIr) -> Vec<i64> {
    t.shape.iter().map(|d| *d as i64).collect()
}
