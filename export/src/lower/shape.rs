//! Layout and indexing operations shared by float, int and bool tensors: reshape, transpose,
//! slice, slice-assign, cat, expand, repeat, gather/select, masks, flip, pad, creation.

use burn::backend::ir::{BaseOperationIr, PadModeIr, PadOpIr, TensorIr};
use burn::tensor::Slice;

use super::Lowerer;
use crate::dynamic::SymDim;
use crate::error::{ExportError, Result};
use crate::proto::Attribute;

/// Concrete `(start, end, step)` of a Burn slice on an axis of length `dim`, in ONNX form.
pub(crate) fn onnx_slice(s: &Slice, dim: usize) -> (i64, i64, i64) {
    let dim = dim as i64;
    let norm = |v: isize| -> i64 {
        let v = v as i64;
        (if v < 0 { v + dim } else { v }).clamp(0, dim)
    };
    let start = norm(s.start);
    let end = s.end.map(norm).unwrap_or(dim);
    let step = s.step as i64;
    if step > 0 {
        (start, end, step)
    } else {
        // Burn walks the range backwards from its last element.
        let first = end - 1;
        let stop = if start == 0 { i64::MIN } else { start - 1 };
        (first, stop, step)
    }
}

impl Lowerer {
    pub(super) fn base(&mut self, op: &BaseOperationIr) -> Result<()> {
        use BaseOperationIr as B;
        match op {
            B::Reshape(r) => self.reshape(&r.input, &r.out),
            B::SwapDims(s) => {
                let mut perm: Vec<usize> = (0..s.input.shape.len()).collect();
                perm.swap(s.dim1, s.dim2);
                self.transpose(&s.input, &s.out, &perm)
            }
            B::Permute(p) => self.transpose(&p.input, &p.out, &p.axes),
            B::Flip(f) => {
                let x = self.input(&f.input)?;
                if f.axes.is_empty() {
                    self.alias(&f.out, x);
                    return Ok(());
                }
                let n = f.axes.len();
                let starts = self.ints(&vec![-1; n]);
                let ends = self.ints(&vec![i64::MIN; n]);
                let axes = self.ints(&f.axes.iter().map(|a| *a as i64).collect::<Vec<_>>());
                let steps = self.ints(&vec![-1; n]);
                self.emit("Slice", vec![x, starts, ends, axes, steps], &f.out, vec![]);
                Ok(())
            }
            B::Expand(e) => self.expand(&e.input, &e.out),
            B::Slice(s) => self.slice(&s.tensor, &s.ranges, &s.out),
            B::SliceAssign(s) => self.slice_assign(s),
            B::Select(s) => {
                let x = self.input(&s.tensor)?;
                let i = self.input(&s.indices)?;
                self.emit(
                    "Gather",
                    vec![x, i],
                    &s.out,
                    vec![Attribute::int("axis", s.dim as i64)],
                );
                Ok(())
            }
            B::Gather(g) => {
                let x = self.input(&g.tensor)?;
                let i = self.input(&g.indices)?;
                self.emit(
                    "GatherElements",
                    vec![x, i],
                    &g.out,
                    vec![Attribute::int("axis", g.dim as i64)],
                );
                Ok(())
            }
            B::Scatter(s) => {
                let x = self.input(&s.tensor)?;
                let i = self.input(&s.indices)?;
                let v = self.input(&s.value)?;
                let reduction = scatter_reduction(&format!("{:?}", s.update))
                    .ok_or_else(|| self.unsupported(&format!("scatter update {:?}", s.update)))?;
                let mut attrs = vec![Attribute::int("axis", s.dim as i64)];
                if reduction != "none" {
                    attrs.push(Attribute::string("reduction", reduction));
                }
                self.emit("ScatterElements", vec![x, i, v], &s.out, attrs);
                Ok(())
            }
            B::MaskWhere(m) => {
                let mask = self.input(&m.mask)?;
                let v = self.input(&m.value)?;
                let x = self.input(&m.tensor)?;
                self.emit("Where", vec![mask, v, x], &m.out, vec![]);
                Ok(())
            }
            B::MaskFill(m) => {
                let mask = self.input(&m.mask)?;
                let v = self.scalar(m.value, m.tensor.dtype)?;
                let x = self.input(&m.tensor)?;
                self.emit("Where", vec![mask, v, x], &m.out, vec![]);
                Ok(())
            }
            B::Equal(b) => self.equal(b, false),
            B::NotEqual(b) => self.equal(b, true),
            B::EqualElem(s) => self.equal_scalar(s, false),
            B::NotEqualElem(s) => self.equal_scalar(s, true),
            B::RepeatDim(r) => {
                let x = self.input(&r.tensor)?;
                let mut reps = vec![1i64; r.tensor.shape.len()];
                reps[r.dim] = r.times as i64;
                let reps = self.ints(&reps);
                self.emit("Tile", vec![x, reps], &r.out, vec![]);
                Ok(())
            }
            B::Cat(c) => {
                let inputs = c
                    .tensors
                    .iter()
                    .map(|t| self.input(t))
                    .collect::<Result<Vec<_>>>()?;
                if inputs.len() == 1 {
                    self.alias(&c.out, inputs[0].clone());
                    return Ok(());
                }
                self.emit(
                    "Concat",
                    inputs,
                    &c.out,
                    vec![Attribute::int("axis", c.dim as i64)],
                );
                Ok(())
            }
            B::Cast(c) => self.cast_to(&c.input, &c.out),
            B::Empty(_) | B::Zeros(_) | B::Ones(_) => {
                Err(self.unsupported("creation ops are always folded; this is a bug"))
            }
            B::All(r) | B::Any(r) => {
                let all = matches!(op, B::All(_));
                let x = self.input(&r.input)?;
                let v = self.truthy(x, &r.input)?;
                let y =
                    self.reduce_node(if all { "ReduceMin" } else { "ReduceMax" }, v, None, false)?;
                let y = self.tmp("Cast", vec![y], vec![Attribute::int("to", 9)]);
                let shape = self.ints(&super::dims_i64(&r.out));
                self.emit("Reshape", vec![y, shape], &r.out, vec![]);
                Ok(())
            }
            B::AllDim(r) | B::AnyDim(r) => {
                let all = matches!(op, B::AllDim(_));
                let x = self.input(&r.input)?;
                let v = self.truthy(x, &r.input)?;
                let y = self.reduce_node(
                    if all { "ReduceMin" } else { "ReduceMax" },
                    v,
                    Some(&[r.axis as i64]),
                    true,
                )?;
                self.emit("Cast", vec![y], &r.out, vec![Attribute::int("to", 9)]);
                Ok(())
            }
            B::Unfold(_) => Err(self.unsupported("unfold is not lowered yet")),
            B::ScatterNd(_) | B::GatherNd(_) | B::SelectAssign(_) => {
                Err(self.unsupported("not lowered yet"))
            }
        }
    }

    /// `x != 0` as int32 0/1, so min/max reductions implement all/any.
    fn truthy(&mut self, x: String, t: &TensorIr) -> Result<String> {
        let b = if t.dtype.is_bool() {
            x
        } else {
            self.tmp("Cast", vec![x], vec![Attribute::int("to", 9)])
        };
        Ok(self.tmp("Cast", vec![b], vec![Attribute::int("to", 6)]))
    }

    pub(super) fn reshape(&mut self, input: &TensorIr, out: &TensorIr) -> Result<()> {
        let x = self.input(input)?;
        if input.shape == out.shape && self.sym_dims(input.id) == self.sym_dims(out.id) {
            self.alias(out, x);
            return Ok(());
        }
        let sym = self.sym_dims(out.id);
        let dims: Vec<i64> = super::dims_i64(out);
        let n_sym = sym.iter().filter(|d| d.is_some()).count();
        let shape = if n_sym <= 1 {
            let target: Vec<i64> = dims
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    if sym.get(i).copied().flatten().is_some() {
                        -1
                    } else {
                        *d
                    }
                })
                .collect();
            self.ints(&target)
        } else {
            self.shape_value(&out.shape, &sym)?
        };
        let mut attrs = vec![];
        if dims.contains(&0) {
            attrs.push(Attribute::int("allowzero", 1));
        }
        self.emit("Reshape", vec![x, shape], out, attrs);
        Ok(())
    }

    pub(super) fn transpose(
        &mut self,
        input: &TensorIr,
        out: &TensorIr,
        perm: &[usize],
    ) -> Result<()> {
        let x = self.input(input)?;
        if perm.iter().enumerate().all(|(i, p)| i == *p) {
            self.alias(out, x);
            return Ok(());
        }
        self.emit(
            "Transpose",
            vec![x],
            out,
            vec![Attribute::ints("perm", perm.iter().map(|p| *p as i64))],
        );
        Ok(())
    }

    fn expand(&mut self, input: &TensorIr, out: &TensorIr) -> Result<()> {
        let x = self.input(input)?;
        if input.shape == out.shape {
            self.alias(out, x);
            return Ok(());
        }
        let in_sym = self.sym_dims(input.id);
        let out_sym = self.sym_dims(out.id);
        let offset = out.shape.len() - input.shape.len();
        // A batch axis the input already has is kept by broadcasting with 1; a batch axis the
        // input lacks is computed from the runtime batch size.
        let mut sym: Vec<Option<SymDim>> = vec![None; out.shape.len()];
        let mut dims: Vec<usize> = out.shape.to_vec();
        for (i, s) in out_sym.iter().enumerate() {
            if let Some(s) = s {
                let same = i >= offset && in_sym.get(i - offset).copied().flatten() == Some(*s);
                if same {
                    dims[i] = 1;
                } else {
                    sym[i] = Some(*s);
                }
            }
        }
        let shape = self.shape_value(&dims, &sym)?;
        self.emit("Expand", vec![x, shape], out, vec![]);
        Ok(())
    }

    pub(super) fn slice(
        &mut self,
        input: &TensorIr,
        ranges: &[Slice],
        out: &TensorIr,
    ) -> Result<()> {
        let x = self.input(input)?;
        let sym = self.sym_dims(input.id);
        let (mut starts, mut ends, mut axes, mut steps) = (vec![], vec![], vec![], vec![]);
        for (axis, range) in ranges.iter().enumerate() {
            let dim = input.shape[axis];
            let (s, e, st) = onnx_slice(range, dim);
            let full = s == 0 && e == dim as i64 && st == 1;
            if full {
                continue;
            }
            if sym.get(axis).copied().flatten().is_some() {
                return Err(ExportError::Dynamic(format!(
                    "op #{} {} slices the batch axis {axis} to a fixed range",
                    self.index, self.label
                )));
            }
            starts.push(s);
            ends.push(e);
            axes.push(axis as i64);
            steps.push(st);
        }
        if axes.is_empty() {
            self.alias(out, x);
            return Ok(());
        }
        let mut inputs = vec![x, self.ints(&starts), self.ints(&ends), self.ints(&axes)];
        if steps.iter().any(|s| *s != 1) {
            inputs.push(self.ints(&steps));
        }
        self.emit("Slice", inputs, out, vec![]);
        Ok(())
    }

    /// Slice assignment as ScatterND with the region's coordinates computed at export time.
    fn slice_assign(&mut self, s: &burn::backend::ir::SliceAssignOpIr) -> Result<()> {
        if self.is_dynamic(&s.tensor) {
            return Err(ExportError::Dynamic(format!(
                "op #{} slice_assign on a batch-dependent tensor is not supported",
                self.index
            )));
        }
        let x = self.input(&s.tensor)?;
        let v = self.input(&s.value)?;
        let rank = s.tensor.shape.len();
        let per_axis: Vec<Vec<i64>> = (0..rank)
            .map(|axis| {
                let dim = s.tensor.shape[axis];
                match s.ranges.get(axis) {
                    None => (0..dim as i64).collect(),
                    Some(r) => {
                        let (start, end, step) = onnx_slice(r, dim);
                        let mut v = vec![];
                        let mut i = start;
                        while (step > 0 && i < end) || (step < 0 && i > end && i >= 0) {
                            v.push(i);
                            i += step;
                        }
                        v
                    }
                }
            })
            .collect();
        let count: usize = per_axis.iter().map(Vec::len).product();
        let mut coords = Vec::with_capacity(count * rank);
        let mut idx = vec![0usize; rank];
        for _ in 0..count {
            for (axis, i) in idx.iter().enumerate() {
                coords.push(per_axis[axis][*i]);
            }
            for axis in (0..rank).rev() {
                idx[axis] += 1;
                if idx[axis] < per_axis[axis].len() {
                    break;
                }
                idx[axis] = 0;
            }
        }
        let mut dims: Vec<i64> = per_axis.iter().map(|a| a.len() as i64).collect();
        dims.push(rank as i64);
        let raw = coords.iter().flat_map(|c| c.to_le_bytes()).collect();
        let indices = self.g.initializer(
            "slice_assign_indices",
            dims,
            crate::proto::data_type::INT64,
            crate::proto::RawData::Bytes(raw),
        );
        self.emit("ScatterND", vec![x, indices, v], &s.out, vec![]);
        Ok(())
    }

    pub(super) fn pad(&mut self, p: &PadOpIr) -> Result<()> {
        let x = self.input(&p.input)?;
        let rank = p.input.shape.len();
        let mut pads = vec![0i64; 2 * rank];
        for (axis, (before, after)) in p.padding.iter().enumerate() {
            // Padding pairs apply to the last axes when fewer than the rank are given.
            let a = rank - p.padding.len() + axis;
            pads[a] = *before as i64;
            pads[a + rank] = *after as i64;
        }
        let pads = self.ints(&pads);
        let (mode, value) = match p.mode {
            PadModeIr::Constant(v) => ("constant", Some(v)),
            PadModeIr::Reflect => ("reflect", None),
            PadModeIr::Edge => ("edge", None),
        };
        let mut inputs = vec![x, pads];
        if let Some(v) = value {
            inputs.push(self.scalar(v, p.input.dtype)?);
        }
        self.emit("Pad", inputs, &p.out, vec![Attribute::string("mode", mode)]);
        Ok(())
    }
}

/// ONNX `reduction` attribute for a Burn indexing update.
fn scatter_reduction(update: &str) -> Option<&'static str> {
    match update {
        "Add" => Some("add"),
        "Mul" => Some("mul"),
        "Max" => Some("max"),
        "Min" => Some("min"),
        "Assign" | "Replace" => Some("none"),
        _ => None,
    }
}
