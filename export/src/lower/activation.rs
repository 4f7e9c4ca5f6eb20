//! Activations: ReLU family, GELU, sigmoid family, softmax family.

use burn::backend::ir::ActivationOperationIr;

use super::{scalar_f64, Lowerer};
use crate::error::Result;
use crate::proto::Attribute;

impl Lowerer {
    pub(super) fn activation(&mut self, op: &ActivationOperationIr) -> Result<()> {
        use ActivationOperationIr as A;
        match op {
            A::Relu(u) => self.unary("Relu", u),
            A::Sigmoid(u) => self.unary("Sigmoid", u),
            A::LeakyRelu(s) => {
                let x = self.input(&s.lhs)?;
                let alpha = scalar_f64(s.rhs) as f32;
                self.emit(
                    "LeakyRelu",
                    vec![x],
                    &s.out,
                    vec![Attribute::float("alpha", alpha)],
                );
                Ok(())
            }
            A::PRelu(b) => {
                let x = self.input(&b.lhs)?;
                let mut slope = self.input(&b.rhs)?;
                // Burn broadcasts a per-channel slope over axis 1; ONNX broadcasts from the
                // right, so give the slope trailing unit axes.
                let (xr, sr) = (b.lhs.shape.len(), b.rhs.shape.len());
                if sr == 1 && xr > 2 && b.rhs.shape[0] > 1 {
                    let mut shape = vec![b.rhs.shape[0] as i64];
                    shape.extend(std::iter::repeat_n(1, xr - 2));
                    let shape = self.ints(&shape);
                    slope = self.tmp("Reshape", vec![slope, shape], vec![]);
                }
                self.emit("PRelu", vec![x, slope], &b.out, vec![]);
                Ok(())
            }
            A::Gelu(u) => {
                let x = self.input(&u.input)?;
                if self.opset >= 20 {
                    self.emit("Gelu", vec![x], &u.out, vec![]);
                    return Ok(());
                }
                // x * 0.5 * (1 + erf(x / sqrt(2)))
                let dtype = u.input.dtype;
                let s2 = self.scalar_f(std::f64::consts::SQRT_2, dtype)?;
                let d = self.tmp("Div", vec![x.clone(), s2], vec![]);
                let e = self.tmp("Erf", vec![d], vec![]);
                let one = self.scalar_f(1.0, dtype)?;
                let a = self.tmp("Add", vec![e, one], vec![]);
                let m = self.tmp("Mul", vec![x, a], vec![]);
                let half = self.scalar_f(0.5, dtype)?;
                self.emit("Mul", vec![m, half], &u.out, vec![]);
                Ok(())
            }
            A::HardSigmoid(h) => {
                let x = self.input(&h.tensor)?;
                let attrs = vec![
                    Attribute::float("alpha", scalar_f64(h.alpha) as f32),
                    Attribute::float("beta", scalar_f64(h.beta) as f32),
                ];
                self.emit("HardSigmoid", vec![x], &h.out, attrs);
                Ok(())
            }
            A::LogSigmoid(u) => {
                // log(sigmoid(x)) = -softplus(-x)
                let x = self.input(&u.input)?;
                let n = self.tmp("Neg", vec![x], vec![]);
                let s = self.tmp("Softplus", vec![n], vec![]);
                self.emit("Neg", vec![s], &u.out, vec![]);
                Ok(())
            }
            A::Softmax(d) => {
                let x = self.input(&d.input)?;
                self.emit(
                    "Softmax",
                    vec![x],
                    &d.out,
                    vec![Attribute::int("axis", d.axis as i64)],
                );
                Ok(())
            }
            A::LogSoftmax(d) => {
                let x = self.input(&d.input)?;
                self.emit(
                    "LogSoftmax",
                    vec![x],
                    &d.out,
                    vec![Attribute::int("axis", d.axis as i64)],
                );
                Ok(())
            }
            A::Softmin(d) => {
                let x = self.input(&d.input)?;
                let n = self.tmp("Neg", vec![x], vec![]);
                self.emit(
                    "Softmax",
                    vec![n],
                    &d.out,
                    vec![Attribute::int("axis", d.axis as i64)],
                );
                Ok(())
            }
            _ => Err(self.unsupported("training-only (backward) operation")),
        }
    }
}
