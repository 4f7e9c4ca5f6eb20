//! Element-wise arithmetic, comparisons, casts and unary math (float, int and bool).

use burn::backend::ir::{
    BinaryOpIr, BoolOperationIr, FloatOperationIr, IntOperationIr, NumericOperationIr, ScalarIr,
    ScalarOpIr, UnaryOpIr,
};
use burn::tensor::DType;

use super::Lowerer;
use crate::error::Result;
use crate::graph::onnx_type;
use crate::proto::Attribute;

impl Lowerer {
    /// `lhs op rhs` for two tensors (ONNX broadcasting matches Burn's).
    pub(super) fn binary(&mut self, op_type: &str, b: &BinaryOpIr) -> Result<()> {
        let (l, r) = (self.input(&b.lhs)?, self.input(&b.rhs)?);
        self.emit(op_type, vec![l, r], &b.out, vec![]);
        Ok(())
    }

    /// `lhs op scalar`, the scalar stored as a 0-d constant of the tensor's dtype.
    pub(super) fn binary_scalar(&mut self, op_type: &str, s: &ScalarOpIr) -> Result<()> {
        let l = self.input(&s.lhs)?;
        let r = self.scalar(s.rhs, s.lhs.dtype)?;
        self.emit(op_type, vec![l, r], &s.out, vec![]);
        Ok(())
    }

    pub(super) fn unary(&mut self, op_type: &str, u: &UnaryOpIr) -> Result<()> {
        let x = self.input(&u.input)?;
        self.emit(op_type, vec![x], &u.out, vec![]);
        Ok(())
    }

    /// Comparison against a scalar.
    fn compare_scalar(&mut self, op_type: &str, s: &ScalarOpIr) -> Result<()> {
        self.binary_scalar(op_type, s)
    }

    /// `Not(op(a, b))` for not-equal.
    fn not_of(&mut self, op_type: &str, l: String, r: String, out: &burn::backend::ir::TensorIr) {
        let t = self.tmp(op_type, vec![l, r], vec![]);
        self.emit("Not", vec![t], out, vec![]);
    }

    /// Cast node producing `out`.
    pub(super) fn cast_to(
        &mut self,
        input: &burn::backend::ir::TensorIr,
        out: &burn::backend::ir::TensorIr,
    ) -> Result<()> {
        let x = self.input(input)?;
        if onnx_type(input.dtype)? == onnx_type(out.dtype)? {
            self.alias(out, x);
            return Ok(());
        }
        let to = i64::from(self.elem(out)?);
        self.emit("Cast", vec![x], out, vec![Attribute::int("to", to)]);
        Ok(())
    }

    pub(super) fn numeric(&mut self, op: &NumericOperationIr) -> Result<()> {
        use NumericOperationIr as N;
        match op {
            N::Add(b) => self.binary("Add", b),
            N::Sub(b) => self.binary("Sub", b),
            N::Mul(b) => self.binary("Mul", b),
            N::Div(b) => self.binary("Div", b),
            N::AddScalar(s) => self.binary_scalar("Add", s),
            N::SubScalar(s) => self.binary_scalar("Sub", s),
            N::MulScalar(s) => self.binary_scalar("Mul", s),
            N::DivScalar(s) => self.binary_scalar("Div", s),
            N::Rem(b) => {
                let (l, r) = (self.input(&b.lhs)?, self.input(&b.rhs)?);
                self.remainder(l, r, &b.lhs.dtype, &b.out)
            }
            N::RemScalar(s) => {
                let l = self.input(&s.lhs)?;
                let r = self.scalar(s.rhs, s.lhs.dtype)?;
                self.remainder(l, r, &s.lhs.dtype, &s.out)
            }
            N::Abs(u) => self.unary("Abs", u),
            N::Neg(u) => self.unary("Neg", u),
            N::Sign(u) => self.unary("Sign", u),
            N::Powi(b) => self.pow(b),
            N::PowiScalar(s) => self.pow_scalar(s),
            N::Greater(b) => self.binary("Greater", b),
            N::GreaterEqual(b) => self.binary("GreaterOrEqual", b),
            N::Lower(b) => self.binary("Less", b),
            N::LowerEqual(b) => self.binary("LessOrEqual", b),
            N::GreaterElem(s) => self.compare_scalar("Greater", s),
            N::GreaterEqualElem(s) => self.compare_scalar("GreaterOrEqual", s),
            N::LowerElem(s) => self.compare_scalar("Less", s),
            N::LowerEqualElem(s) => self.compare_scalar("LessOrEqual", s),
            N::Clamp(c) => {
                let x = self.input(&c.tensor)?;
                let lo = self.scalar(c.min, c.tensor.dtype)?;
                let hi = self.scalar(c.max, c.tensor.dtype)?;
                let t = self.tmp("Max", vec![x, lo], vec![]);
                self.emit("Min", vec![t, hi], &c.out, vec![]);
                Ok(())
            }
            N::ClampMin(s) => self.binary_scalar("Max", s),
            N::ClampMax(s) => self.binary_scalar("Min", s),
            N::Full(_) => Err(self.unsupported("full is always folded; this is a bug")),
            N::CumSum(d) => {
                let x = self.input(&d.input)?;
                let axis = self.g.const_scalar(
                    "axis",
                    crate::proto::data_type::INT64,
                    (d.axis as i64).to_le_bytes().to_vec(),
                );
                self.emit("CumSum", vec![x, axis], &d.out, vec![]);
                Ok(())
            }
            N::Mean(r) => self.reduce_all("ReduceMean", r),
            N::Sum(r) => self.reduce_all("ReduceSum", r),
            N::Prod(r) => self.reduce_all("ReduceProd", r),
            N::Max(r) => self.reduce_all("ReduceMax", r),
            N::Min(r) => self.reduce_all("ReduceMin", r),
            N::MeanDim(r) => self.reduce_dim("ReduceMean", r),
            N::SumDim(r) => self.reduce_dim("ReduceSum", r),
            N::ProdDim(r) => self.reduce_dim("ReduceProd", r),
            N::MaxDim(r) => self.reduce_dim("ReduceMax", r),
            N::MinDim(r) => self.reduce_dim("ReduceMin", r),
            N::SumDims(r) => {
                let x = self.input(&r.input)?;
                let axes: Vec<i64> = r.axes.iter().map(|a| *a as i64).collect();
                let y = self.reduce_node("ReduceSum", x, Some(&axes), true)?;
                self.alias(&r.out, y);
                Ok(())
            }
            N::MaxAbs(r) => {
                let x = self.input(&r.input)?;
                let a = self.tmp("Abs", vec![x], vec![]);
                self.reduce_all_from("ReduceMax", a, &r.out)
            }
            N::MaxAbsDim(r) => {
                let x = self.input(&r.input)?;
                let a = self.tmp("Abs", vec![x], vec![]);
                let y = self.reduce_node("ReduceMax", a, Some(&[r.axis as i64]), true)?;
                self.alias(&r.out, y);
                Ok(())
            }
            N::ArgMax(r) => self.arg_reduce("ArgMax", r),
            N::ArgMin(r) => self.arg_reduce("ArgMin", r),
            N::MaxDimWithIndices(r) => self.reduce_with_indices("ReduceMax", "ArgMax", r),
            N::MinDimWithIndices(r) => self.reduce_with_indices("ReduceMin", "ArgMin", r),
            N::Pad(p) => self.pad(p),
            N::Sort(s) => self.sort(s, false),
            N::ArgSort(s) => self.sort(s, true),
            N::TopK(_) | N::ArgTopK(_) | N::TopKWithIndices(_) | N::SortWithIndices(_) => {
                Err(self.unsupported("top-k / sort with indices is not lowered yet"))
            }
            N::CumProd(_) | N::CumMin(_) | N::CumMax(_) => {
                Err(self.unsupported("ONNX has no cumulative product/min/max operator"))
            }
            N::IntRandom(_) => Err(self.unsupported("random tensors cannot be exported")),
        }
    }

    /// Burn's remainder takes the sign of the divisor: `x - floor(x / y) * y`.
    fn remainder(
        &mut self,
        l: String,
        r: String,
        dtype: &DType,
        out: &burn::backend::ir::TensorIr,
    ) -> Result<()> {
        if dtype.is_float() {
            let q = self.tmp("Div", vec![l.clone(), r.clone()], vec![]);
            let f = self.tmp("Floor", vec![q], vec![]);
            let m = self.tmp("Mul", vec![f, r], vec![]);
            self.emit("Sub", vec![l, m], out, vec![]);
        } else {
            // Integer Mod with fmod=0 already follows the divisor's sign.
            self.emit("Mod", vec![l, r], out, vec![Attribute::int("fmod", 0)]);
        }
        Ok(())
    }

    fn pow(&mut self, b: &BinaryOpIr) -> Result<()> {
        self.binary("Pow", b)
    }

    fn pow_scalar(&mut self, s: &ScalarOpIr) -> Result<()> {
        let x = self.input(&s.lhs)?;
        let e = super::scalar_f64(s.rhs);
        if e == 2.0 {
            self.emit("Mul", vec![x.clone(), x], &s.out, vec![]);
            return Ok(());
        }
        if e == 1.0 {
            self.alias(&s.out, x);
            return Ok(());
        }
        if e == 0.5 && s.lhs.dtype.is_float() {
            self.emit("Sqrt", vec![x], &s.out, vec![]);
            return Ok(());
        }
        let r = self.scalar(s.rhs, s.lhs.dtype)?;
        self.emit("Pow", vec![x, r], &s.out, vec![]);
        Ok(())
    }

    pub(super) fn float(&mut self, op: &FloatOperationIr) -> Result<()> {
        use FloatOperationIr as F;
        match op {
            F::Exp(u) => self.unary("Exp", u),
            F::Log(u) => self.unary("Log", u),
            F::Log1p(u) => {
                let x = self.input(&u.input)?;
                let one = self.scalar(ScalarIr::Float(1.0), u.input.dtype)?;
                let t = self.tmp("Add", vec![x, one], vec![]);
                self.emit("Log", vec![t], &u.out, vec![]);
                Ok(())
            }
            F::Erf(u) => self.unary("Erf", u),
            F::Sqrt(u) => self.unary("Sqrt", u),
            F::Cos(u) => self.unary("Cos", u),
            F::Cosh(u) => self.unary("Cosh", u),
            F::Sin(u) => self.unary("Sin", u),
            F::Sinh(u) => self.unary("Sinh", u),
            F::Tan(u) => self.unary("Tan", u),
            F::Tanh(u) => self.unary("Tanh", u),
            F::ArcCos(u) => self.unary("Acos", u),
            F::ArcCosh(u) => self.unary("Acosh", u),
            F::ArcSin(u) => self.unary("Asin", u),
            F::ArcSinh(u) => self.unary("Asinh", u),
            F::ArcTan(u) => self.unary("Atan", u),
            F::ArcTanh(u) => self.unary("Atanh", u),
            F::Round(u) => self.unary("Round", u),
            F::Floor(u) => self.unary("Floor", u),
            F::Ceil(u) => self.unary("Ceil", u),
            F::Trunc(u) => {
                // trunc(x) = sign(x) * floor(|x|)
                let x = self.input(&u.input)?;
                let s = self.tmp("Sign", vec![x.clone()], vec![]);
                let a = self.tmp("Abs", vec![x], vec![]);
                let f = self.tmp("Floor", vec![a], vec![]);
                self.emit("Mul", vec![s, f], &u.out, vec![]);
                Ok(())
            }
            F::Recip(u) => self.unary("Reciprocal", u),
            F::IsNan(u) => self.unary("IsNaN", u),
            F::IsInf(u) => self.unary("IsInf", u),
            F::IntoInt(c) => self.cast_to(&c.input, &c.out),
            F::Matmul(m) => {
                let (l, r) = (self.input(&m.lhs)?, self.input(&m.rhs)?);
                self.emit("MatMul", vec![l, r], &m.out, vec![]);
                Ok(())
            }
            F::PowfScalar(s) => self.pow_scalar(s),
            F::Powf(b) => self.binary("Pow", b),
            F::ArcTan2(_) | F::Hypot(_) | F::Cross(_) => {
                Err(self.unsupported("no ONNX lowering yet (atan2 / hypot / cross)"))
            }
            F::Random(_) => Err(self.unsupported("random tensors cannot be exported")),
            F::Quantize(_) | F::Dequantize(_) => Err(self.unsupported("quantized tensors")),
            F::GridSample2d(_) => Err(self.unsupported("grid_sample_2d is not lowered yet")),
        }
    }

    pub(super) fn int(&mut self, op: &IntOperationIr) -> Result<()> {
        use IntOperationIr as I;
        match op {
            I::IntoFloat(c) => self.cast_to(&c.input, &c.out),
            I::Matmul(m) => {
                let (l, r) = (self.input(&m.lhs)?, self.input(&m.rhs)?);
                self.emit("MatMul", vec![l, r], &m.out, vec![]);
                Ok(())
            }
            I::BitwiseAnd(b) if self.opset >= 18 => self.binary("BitwiseAnd", b),
            I::BitwiseOr(b) if self.opset >= 18 => self.binary("BitwiseOr", b),
            I::BitwiseXor(b) if self.opset >= 18 => self.binary("BitwiseXor", b),
            I::BitwiseNot(u) if self.opset >= 18 => self.unary("BitwiseNot", u),
            I::BitwiseAndScalar(s) if self.opset >= 18 => self.binary_scalar("BitwiseAnd", s),
            I::BitwiseOrScalar(s) if self.opset >= 18 => self.binary_scalar("BitwiseOr", s),
            I::BitwiseXorScalar(s) if self.opset >= 18 => self.binary_scalar("BitwiseXor", s),
            _ => {
                Err(self.unsupported("bitwise operations need opset >= 18; shifts are not lowered"))
            }
        }
    }

    pub(super) fn bool_op(&mut self, op: &BoolOperationIr) -> Result<()> {
        use BoolOperationIr as B;
        match op {
            B::IntoFloat(c) | B::IntoInt(c) => self.cast_to(&c.input, &c.out),
            B::Not(u) => self.unary("Not", u),
            B::And(b) => self.binary("And", b),
            B::Or(b) => self.binary("Or", b),
            B::Xor(b) => self.binary("Xor", b),
        }
    }

    /// Equality ops shared by float, int and bool tensors.
    pub(super) fn equal(&mut self, b: &BinaryOpIr, negate: bool) -> Result<()> {
        let (l, r) = (self.input(&b.lhs)?, self.input(&b.rhs)?);
        if negate {
            self.not_of("Equal", l, r, &b.out);
        } else {
            self.emit("Equal", vec![l, r], &b.out, vec![]);
        }
        Ok(())
    }

    /// Equality against a scalar.
    pub(super) fn equal_scalar(&mut self, s: &ScalarOpIr, negate: bool) -> Result<()> {
        let l = self.input(&s.lhs)?;
        let r = self.scalar(s.rhs, s.lhs.dtype)?;
        if negate {
            self.not_of("Equal", l, r, &s.out);
        } else {
            self.emit("Equal", vec![l, r], &s.out, vec![]);
        }
        Ok(())
    }
}
