//! Reductions (all / per dim), arg-reductions and sort.

use burn::backend::ir::{ReduceDimOpIr, ReduceDimWithIndicesOpIr, ReduceOpIr, SortOpIr, TensorIr};

use super::Lowerer;
use crate::error::Result;
use crate::proto::Attribute;

impl Lowerer {
    /// One reduce node. `axes = None` reduces everything. Axes are an input for ReduceSum
    /// from opset 13 and for the other reductions from opset 18.
    pub(super) fn reduce_node(
        &mut self,
        op_type: &str,
        x: String,
        axes: Option<&[i64]>,
        keepdims: bool,
    ) -> Result<String> {
        let axes_as_input = op_type == "ReduceSum" || self.opset >= 18;
        let mut inputs = vec![x];
        let mut attrs = vec![Attribute::int("keepdims", i64::from(keepdims))];
        if let Some(axes) = axes {
            if axes_as_input {
                inputs.push(self.ints(axes));
            } else {
                attrs.push(Attribute::ints("axes", axes.iter().copied()));
            }
        }
        Ok(self.tmp(op_type, inputs, attrs))
    }

    /// Full reduction; Burn returns a tensor of shape `[1]`.
    pub(super) fn reduce_all(&mut self, op_type: &str, r: &ReduceOpIr) -> Result<()> {
        let x = self.input(&r.input)?;
        self.reduce_all_from(op_type, x, &r.out)
    }

    pub(super) fn reduce_all_from(
        &mut self,
        op_type: &str,
        x: String,
        out: &TensorIr,
    ) -> Result<()> {
        let y = self.reduce_node(op_type, x, None, false)?;
        let shape = self.ints(&super::dims_i64(out));
        self.emit("Reshape", vec![y, shape], out, vec![]);
        Ok(())
    }

    /// Reduction over one axis, kept with length one as Burn does.
    pub(super) fn reduce_dim(&mut self, op_type: &str, r: &ReduceDimOpIr) -> Result<()> {
        let x = self.input(&r.input)?;
        let axes = [r.axis as i64];
        let axes_as_input = op_type == "ReduceSum" || self.opset >= 18;
        let mut inputs = vec![x];
        let mut attrs = vec![Attribute::int("keepdims", 1)];
        if axes_as_input {
            inputs.push(self.ints(&axes));
        } else {
            attrs.push(Attribute::ints("axes", axes));
        }
        self.emit(op_type, inputs, &r.out, attrs);
        Ok(())
    }

    pub(super) fn arg_reduce(&mut self, op_type: &str, r: &ReduceDimOpIr) -> Result<()> {
        let x = self.input(&r.input)?;
        let attrs = vec![
            Attribute::int("axis", r.axis as i64),
            Attribute::int("keepdims", 1),
        ];
        let idx = self.tmp(op_type, vec![x], attrs);
        let idx = self.cast(idx, burn::tensor::DType::I64, r.out.dtype)?;
        self.alias(&r.out, idx);
        Ok(())
    }

    pub(super) fn reduce_with_indices(
        &mut self,
        reduce: &str,
        arg: &str,
        r: &ReduceDimWithIndicesOpIr,
    ) -> Result<()> {
        let x = self.input(&r.tensor)?;
        let axes = [r.dim as i64];
        let v = self.reduce_node(reduce, x.clone(), Some(&axes), true)?;
        self.alias(&r.out, v);
        let attrs = vec![
            Attribute::int("axis", r.dim as i64),
            Attribute::int("keepdims", 1),
        ];
        let idx = self.tmp(arg, vec![x], attrs);
        let idx = self.cast(idx, burn::tensor::DType::I64, r.out_indices.dtype)?;
        self.alias(&r.out_indices, idx);
        Ok(())
    }

    /// Sort along a dim with TopK over the full axis.
    pub(super) fn sort(&mut self, s: &SortOpIr, indices: bool) -> Result<()> {
        let x = self.input(&s.input)?;
        let k = self.ints(&[s.input.shape[s.dim] as i64]);
        let attrs = vec![
            Attribute::int("axis", s.dim as i64),
            Attribute::int("largest", i64::from(s.descending)),
            Attribute::int("sorted", 1),
        ];
        let values = self.g.fresh("sorted");
        let idx = self.g.fresh("sorted_idx");
        let label = self.label.clone();
        self.g.node(
            "TopK",
            vec![x, k],
            vec![values.clone(), idx.clone()],
            attrs,
            &label,
        );
        if indices {
            let idx = self.cast(idx, burn::tensor::DType::I64, s.out.dtype)?;
            self.alias(&s.out, idx);
        } else {
            self.alias(&s.out, values);
        }
        Ok(())
    }
}
