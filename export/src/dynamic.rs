//! Dynamic batch axis: compare two captures taken at different batch sizes and record, for
//! every tensor of the first capture, which axes depend on the batch and how.

use std::collections::HashMap;

use burn::backend::capture::TensorId;
use burn::backend::ir::{GraphIr, TensorIr};

use crate::error::{ExportError, Result};
use crate::lower::op_label;

/// An axis whose size is `a * batch + c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymDim {
    /// Multiple of the batch size.
    pub a: i64,
    /// Offset.
    pub c: i64,
}

/// Batch-dependent axes of the tensors of the reference capture.
#[derive(Debug, Clone, Default)]
pub struct Symbolic {
    /// Per tensor, per axis: `Some` when the axis depends on the batch.
    pub dims: HashMap<TensorId, Vec<Option<SymDim>>>,
}

impl Symbolic {
    /// Compare `first` (captured at batch `b1`) with `second` (batch `b2`): both must record
    /// the same operations; axes whose sizes differ are affine functions of the batch.
    pub fn infer(first: &GraphIr, second: &GraphIr, b1: usize, b2: usize) -> Result<Self> {
        if first.operations.len() != second.operations.len() {
            let at = first
                .operations
                .iter()
                .zip(&second.operations)
                .take_while(|(a, b)| op_label(a) == op_label(b))
                .count();
            let context = |g: &GraphIr| {
                let ops = &g.operations[at.saturating_sub(2)..(at + 3).min(g.operations.len())];
                ops.iter().map(shaped_label).collect::<Vec<_>>().join(", ")
            };
            return Err(ExportError::Dynamic(format!(
                "the forward pass records {} operations at batch {b1} but {} at batch {b2}; \
                 control flow depends on the batch size. The first difference is operation \
                 #{at}: [{}] at batch {b1}, [{}] at batch {b2}",
                first.operations.len(),
                second.operations.len(),
                context(first),
                context(second),
            )));
        }
        let mut sym = Symbolic::default();
        let mut pair = |t1: &TensorIr, t2: &TensorIr, where_: &str| -> Result<()> {
            if t1.shape.len() != t2.shape.len() {
                return Err(ExportError::Dynamic(format!(
                    "rank differs between captures at {where_}"
                )));
            }
            let dims = t1
                .shape
                .iter()
                .zip(t2.shape.iter())
                .map(|(&d1, &d2)| {
                    if d1 == d2 {
                        return Ok(None);
                    }
                    let (d1, d2, b1, b2) = (d1 as i64, d2 as i64, b1 as i64, b2 as i64);
                    if (d2 - d1) % (b2 - b1) != 0 {
                        return Err(ExportError::Dynamic(format!(
                            "axis of size {d1} at batch {b1} and {d2} at batch {b2} is not a \
                             multiple of the batch ({where_})"
                        )));
                    }
                    let a = (d2 - d1) / (b2 - b1);
                    Ok(Some(SymDim { a, c: d1 - a * b1 }))
                })
                .collect::<Result<Vec<_>>>()?;
            if dims.iter().any(Option::is_some) {
                sym.dims.insert(t1.id, dims);
            }
            Ok(())
        };
        for (i, (o1, o2)) in first.operations.iter().zip(&second.operations).enumerate() {
            let (l1, l2) = (op_label(o1), op_label(o2));
            if l1 != l2 {
                return Err(ExportError::Dynamic(format!(
                    "operation #{i} is `{l1}` at batch {b1} but `{l2}` at batch {b2}"
                )));
            }
            let (n1, n2) = (o1.nodes(), o2.nodes());
            if n1.len() != n2.len() {
                return Err(ExportError::Dynamic(format!(
                    "operation #{i} `{l1}` differs in arity"
                )));
            }
            for (t1, t2) in n1.into_iter().zip(n2) {
                pair(t1, t2, &format!("operation #{i} `{l1}`"))?;
            }
        }
        Ok(sym)
    }
}

/// `Label [a, b] [c, d]`: an operation with the shapes of its tensors, to show where two
/// captures part.
fn shaped_label(op: &burn::backend::ir::OperationIr) -> String {
    let shapes: Vec<String> = op
        .nodes()
        .iter()
        .map(|t| format!("{:?}", t.shape.as_slice()))
        .collect();
    format!("{} {}", op_label(op), shapes.join(" "))
}
