//! 2-D weights: a constant operand with leading unit axes (`[1, K, N]` weights of a broadcast
//! `MatMul`, `[1, 1, N]` biases) loses those axes when the other operand has at least its rank,
//! the form runtimes fuse (ONNX Runtime's `MatMul` + `Add` -> `Gemm`).

use super::{leading_ones, Rewriter};
use crate::proto::{RawData, TensorProto};

impl Rewriter<'_> {
    /// Drop leading unit axes of constant operands of `MatMul` (weights) and of broadcast
    /// element-wise operations (biases, scales) where the result keeps its shape.
    pub(super) fn squeeze_constants(&mut self) -> usize {
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
}
