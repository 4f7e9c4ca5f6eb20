//! The subset of the ONNX protobuf schema the exporter writes, with a streaming encoder.
//!
//! Declared by hand (field numbers from `onnx.proto`) instead of generated: the exporter only
//! writes models, and a hand-written encoder can stream initializer bytes straight from Burn's
//! `TensorData` into the output file without building the whole serialized model in memory.

use std::io::{self, Write};

use burn::tensor::TensorData;

/// ONNX `TensorProto.DataType` values used by the exporter.
pub mod data_type {
    /// 32-bit float.
    pub const FLOAT: i32 = 1;
    /// Unsigned 8-bit integer.
    pub const UINT8: i32 = 2;
    /// Signed 8-bit integer.
    pub const INT8: i32 = 3;
    /// Unsigned 16-bit integer.
    pub const UINT16: i32 = 4;
    /// Signed 16-bit integer.
    pub const INT16: i32 = 5;
    /// Signed 32-bit integer.
    pub const INT32: i32 = 6;
    /// Signed 64-bit integer.
    pub const INT64: i32 = 7;
    /// Boolean, one byte per element.
    pub const BOOL: i32 = 9;
    /// IEEE half precision.
    pub const FLOAT16: i32 = 10;
    /// 64-bit float.
    pub const DOUBLE: i32 = 11;
    /// Unsigned 32-bit integer.
    pub const UINT32: i32 = 12;
    /// Unsigned 64-bit integer.
    pub const UINT64: i32 = 13;
    /// bfloat16.
    pub const BFLOAT16: i32 = 16;
}

/// `ModelProto`.
#[derive(Debug, Clone, Default)]
pub struct ModelProto {
    /// IR version (field 1).
    pub ir_version: i64,
    /// Operator sets (field 8).
    pub opset_import: Vec<OperatorSetId>,
    /// Producer name (field 2).
    pub producer_name: String,
    /// Producer version (field 3).
    pub producer_version: String,
    /// Documentation (field 6).
    pub doc_string: String,
    /// The graph (field 7).
    pub graph: GraphProto,
    /// Free-form key/value metadata (field 14).
    pub metadata_props: Vec<(String, String)>,
}

/// `OperatorSetIdProto`.
#[derive(Debug, Clone, Default)]
pub struct OperatorSetId {
    /// Domain; empty for the default ONNX domain.
    pub domain: String,
    /// Version.
    pub version: i64,
}

/// `GraphProto`.
#[derive(Debug, Clone, Default)]
pub struct GraphProto {
    /// Nodes in topological order (field 1).
    pub node: Vec<NodeProto>,
    /// Graph name (field 2).
    pub name: String,
    /// Initializers (field 5).
    pub initializer: Vec<TensorProto>,
    /// Inputs (field 11).
    pub input: Vec<ValueInfo>,
    /// Outputs (field 12).
    pub output: Vec<ValueInfo>,
}

/// `NodeProto`.
#[derive(Debug, Clone, Default)]
pub struct NodeProto {
    /// Input value names (field 1); an empty string is an omitted optional input.
    pub input: Vec<String>,
    /// Output value names (field 2).
    pub output: Vec<String>,
    /// Node name (field 3).
    pub name: String,
    /// Operator type (field 4).
    pub op_type: String,
    /// Attributes (field 5).
    pub attribute: Vec<Attribute>,
    /// Documentation, used to say which Burn operation produced the node (field 6).
    pub doc_string: String,
}

/// `AttributeProto` with the value kinds the exporter uses.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Attribute name.
    pub name: String,
    /// Attribute value.
    pub value: AttributeValue,
}

/// The value of an [`Attribute`].
#[derive(Debug, Clone)]
pub enum AttributeValue {
    /// `FLOAT`.
    Float(f32),
    /// `INT`.
    Int(i64),
    /// `STRING`.
    String(String),
    /// `TENSOR`.
    Tensor(Box<TensorProto>),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `INTS`.
    Ints(Vec<i64>),
}

impl Attribute {
    /// An `INT` attribute.
    pub fn int(name: &str, value: i64) -> Self {
        Self {
            name: name.into(),
            value: AttributeValue::Int(value),
        }
    }
    /// An `INTS` attribute.
    pub fn ints(name: &str, value: impl IntoIterator<Item = i64>) -> Self {
        Self {
            name: name.into(),
            value: AttributeValue::Ints(value.into_iter().collect()),
        }
    }
    /// A `FLOAT` attribute.
    pub fn float(name: &str, value: f32) -> Self {
        Self {
            name: name.into(),
            value: AttributeValue::Float(value),
        }
    }
    /// A `STRING` attribute.
    pub fn string(name: &str, value: &str) -> Self {
        Self {
            name: name.into(),
            value: AttributeValue::String(value.into()),
        }
    }
    /// A `TENSOR` attribute.
    pub fn tensor(name: &str, value: TensorProto) -> Self {
        Self {
            name: name.into(),
            value: AttributeValue::Tensor(Box::new(value)),
        }
    }
}

/// Tensor bytes, little-endian as ONNX `raw_data` requires.
#[derive(Debug, Clone)]
pub enum RawData {
    /// Bytes owned by the exporter (small constants, converted data).
    Bytes(Vec<u8>),
    /// A captured Burn tensor whose bytes are written as they are, without a copy.
    Burn(TensorData),
}

impl RawData {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RawData::Bytes(bytes) => bytes,
            RawData::Burn(data) => data.as_bytes(),
        }
    }
}

/// `TensorProto`, always written with `raw_data`.
#[derive(Debug, Clone)]
pub struct TensorProto {
    /// Name (field 8).
    pub name: String,
    /// Dimensions (field 1).
    pub dims: Vec<i64>,
    /// Element type (field 2), see [`data_type`].
    pub data_type: i32,
    /// Raw little-endian data (field 9).
    pub raw_data: RawData,
}

/// `ValueInfoProto` for a tensor.
#[derive(Debug, Clone, Default)]
pub struct ValueInfo {
    /// Value name.
    pub name: String,
    /// Element type.
    pub elem_type: i32,
    /// Dimensions; `Dim::Param` is a symbolic axis.
    pub shape: Vec<Dim>,
}

/// One dimension of a [`ValueInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Value(i64),
    /// A symbolic size such as `batch`.
    Param(String),
}

// ---------------------------------------------------------------------------------------------
// Wire format.

const VARINT: u32 = 0;
const FIXED32: u32 = 5;
const LEN: u32 = 2;

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field) << 3)
}

/// Length of a length-delimited field holding `len` bytes.
fn len_field(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

fn int_field(field: u32, value: i64) -> usize {
    key_len(field) + varint_len(value as u64)
}

fn str_field(field: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        len_field(field, value.len())
    }
}

/// A protobuf writer over any `io::Write`.
struct Encoder<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> Encoder<'_, W> {
    fn varint(&mut self, mut value: u64) -> io::Result<()> {
        let mut buf = [0u8; 10];
        let mut n = 0;
        while value >= 0x80 {
            buf[n] = (value as u8) | 0x80;
            value >>= 7;
            n += 1;
        }
        buf[n] = value as u8;
        self.out.write_all(&buf[..=n])
    }
    fn key(&mut self, field: u32, wire: u32) -> io::Result<()> {
        self.varint((u64::from(field) << 3) | u64::from(wire))
    }
    fn int(&mut self, field: u32, value: i64) -> io::Result<()> {
        self.key(field, VARINT)?;
        self.varint(value as u64)
    }
    fn bytes(&mut self, field: u32, value: &[u8]) -> io::Result<()> {
        self.key(field, LEN)?;
        self.varint(value.len() as u64)?;
        self.out.write_all(value)
    }
    fn string(&mut self, field: u32, value: &str) -> io::Result<()> {
        if value.is_empty() {
            return Ok(());
        }
        self.bytes(field, value.as_bytes())
    }
    fn message<M: Message>(&mut self, field: u32, value: &M) -> io::Result<()> {
        self.key(field, LEN)?;
        self.varint(value.encoded_len() as u64)?;
        value.encode(self)
    }
}

trait Message {
    fn encoded_len(&self) -> usize;
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()>;
}

fn msg_field<M: Message>(field: u32, value: &M) -> usize {
    len_field(field, value.encoded_len())
}

impl Message for OperatorSetId {
    fn encoded_len(&self) -> usize {
        str_field(1, &self.domain) + int_field(2, self.version)
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        enc.string(1, &self.domain)?;
        enc.int(2, self.version)
    }
}

struct Entry<'a>(&'a str, &'a str);

impl Message for Entry<'_> {
    fn encoded_len(&self) -> usize {
        str_field(1, self.0) + str_field(2, self.1)
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        enc.string(1, self.0)?;
        enc.string(2, self.1)
    }
}

impl Message for TensorProto {
    fn encoded_len(&self) -> usize {
        self.dims.iter().map(|d| int_field(1, *d)).sum::<usize>()
            + int_field(2, i64::from(self.data_type))
            + str_field(8, &self.name)
            + len_field(9, self.raw_data.as_bytes().len())
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        for d in &self.dims {
            enc.int(1, *d)?;
        }
        enc.int(2, i64::from(self.data_type))?;
        enc.string(8, &self.name)?;
        enc.bytes(9, self.raw_data.as_bytes())
    }
}

struct DimMsg<'a>(&'a Dim);

impl Message for DimMsg<'_> {
    fn encoded_len(&self) -> usize {
        match self.0 {
            Dim::Value(v) => int_field(1, *v),
            Dim::Param(p) => len_field(2, p.len()),
        }
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        match self.0 {
            Dim::Value(v) => enc.int(1, *v),
            Dim::Param(p) => enc.bytes(2, p.as_bytes()),
        }
    }
}

struct ShapeMsg<'a>(&'a [Dim]);

impl Message for ShapeMsg<'_> {
    fn encoded_len(&self) -> usize {
        self.0.iter().map(|d| msg_field(1, &DimMsg(d))).sum()
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        for d in self.0 {
            enc.message(1, &DimMsg(d))?;
        }
        Ok(())
    }
}

struct TensorTypeMsg<'a>(&'a ValueInfo);

impl Message for TensorTypeMsg<'_> {
    fn encoded_len(&self) -> usize {
        int_field(1, i64::from(self.0.elem_type)) + msg_field(2, &ShapeMsg(&self.0.shape))
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        enc.int(1, i64::from(self.0.elem_type))?;
        enc.message(2, &ShapeMsg(&self.0.shape))
    }
}

struct TypeMsg<'a>(&'a ValueInfo);

impl Message for TypeMsg<'_> {
    fn encoded_len(&self) -> usize {
        msg_field(1, &TensorTypeMsg(self.0))
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        enc.message(1, &TensorTypeMsg(self.0))
    }
}

impl Message for ValueInfo {
    fn encoded_len(&self) -> usize {
        str_field(1, &self.name) + msg_field(2, &TypeMsg(self))
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        enc.string(1, &self.name)?;
        enc.message(2, &TypeMsg(self))
    }
}

impl Message for Attribute {
    fn encoded_len(&self) -> usize {
        let value = match &self.value {
            AttributeValue::Float(_) => key_len(2) + 4,
            AttributeValue::Int(v) => int_field(3, *v),
            AttributeValue::String(s) => len_field(4, s.len()),
            AttributeValue::Tensor(t) => msg_field(5, t.as_ref()),
            AttributeValue::Floats(v) => v.len() * (key_len(7) + 4),
            AttributeValue::Ints(v) => v.iter().map(|x| int_field(8, *x)).sum(),
        };
        str_field(1, &self.name) + value + int_field(20, self.type_code())
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        enc.string(1, &self.name)?;
        match &self.value {
            AttributeValue::Float(v) => {
                enc.key(2, FIXED32)?;
                enc.out.write_all(&v.to_le_bytes())?;
            }
            AttributeValue::Int(v) => enc.int(3, *v)?,
            AttributeValue::String(s) => enc.bytes(4, s.as_bytes())?,
            AttributeValue::Tensor(t) => enc.message(5, t.as_ref())?,
            // Unpacked repeated scalars: `onnx.proto` is proto2 and does not mark these packed.
            AttributeValue::Floats(v) => {
                for x in v {
                    enc.key(7, FIXED32)?;
                    enc.out.write_all(&x.to_le_bytes())?;
                }
            }
            AttributeValue::Ints(v) => {
                for x in v {
                    enc.int(8, *x)?;
                }
            }
        }
        enc.int(20, self.type_code())
    }
}

impl Attribute {
    fn type_code(&self) -> i64 {
        match self.value {
            AttributeValue::Float(_) => 1,
            AttributeValue::Int(_) => 2,
            AttributeValue::String(_) => 3,
            AttributeValue::Tensor(_) => 4,
            AttributeValue::Floats(_) => 6,
            AttributeValue::Ints(_) => 7,
        }
    }
}

impl Message for NodeProto {
    fn encoded_len(&self) -> usize {
        self.input
            .iter()
            .map(|s| len_field(1, s.len()))
            .sum::<usize>()
            + self
                .output
                .iter()
                .map(|s| len_field(2, s.len()))
                .sum::<usize>()
            + str_field(3, &self.name)
            + str_field(4, &self.op_type)
            + self
                .attribute
                .iter()
                .map(|a| msg_field(5, a))
                .sum::<usize>()
            + str_field(6, &self.doc_string)
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        for s in &self.input {
            enc.bytes(1, s.as_bytes())?;
        }
        for s in &self.output {
            enc.bytes(2, s.as_bytes())?;
        }
        enc.string(3, &self.name)?;
        enc.string(4, &self.op_type)?;
        for a in &self.attribute {
            enc.message(5, a)?;
        }
        enc.string(6, &self.doc_string)
    }
}

impl Message for GraphProto {
    fn encoded_len(&self) -> usize {
        self.node.iter().map(|n| msg_field(1, n)).sum::<usize>()
            + str_field(2, &self.name)
            + self
                .initializer
                .iter()
                .map(|t| msg_field(5, t))
                .sum::<usize>()
            + self.input.iter().map(|v| msg_field(11, v)).sum::<usize>()
            + self.output.iter().map(|v| msg_field(12, v)).sum::<usize>()
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        for n in &self.node {
            enc.message(1, n)?;
        }
        enc.string(2, &self.name)?;
        for t in &self.initializer {
            enc.message(5, t)?;
        }
        for v in &self.input {
            enc.message(11, v)?;
        }
        for v in &self.output {
            enc.message(12, v)?;
        }
        Ok(())
    }
}

impl Message for ModelProto {
    fn encoded_len(&self) -> usize {
        int_field(1, self.ir_version)
            + str_field(2, &self.producer_name)
            + str_field(3, &self.producer_version)
            + str_field(6, &self.doc_string)
            + msg_field(7, &self.graph)
            + self
                .opset_import
                .iter()
                .map(|o| msg_field(8, o))
                .sum::<usize>()
            + self
                .metadata_props
                .iter()
                .map(|(k, v)| msg_field(14, &Entry(k, v)))
                .sum::<usize>()
    }
    fn encode<W: Write>(&self, enc: &mut Encoder<'_, W>) -> io::Result<()> {
        enc.int(1, self.ir_version)?;
        enc.string(2, &self.producer_name)?;
        enc.string(3, &self.producer_version)?;
        enc.string(6, &self.doc_string)?;
        enc.message(7, &self.graph)?;
        for o in &self.opset_import {
            enc.message(8, o)?;
        }
        for (k, v) in &self.metadata_props {
            enc.message(14, &Entry(k, v))?;
        }
        Ok(())
    }
}

impl ModelProto {
    /// Serialized size in bytes.
    pub fn encoded_len(&self) -> usize {
        Message::encoded_len(self)
    }

    /// Stream the serialized model into `out`; initializer bytes are written in place.
    pub fn write_to<W: Write>(&self, out: &mut W) -> io::Result<()> {
        Message::encode(self, &mut Encoder { out })
    }

    /// Serialize into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.encoded_len());
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut bytes);
        bytes
    }
}
