//! Graph tidying: constant folding at the IR level (operations whose inputs are all known at
//! export time are evaluated on the host instead of becoming nodes), and cleanup of the ONNX
//! graph (identity removal, dead nodes, unused initializers).

use std::collections::{HashMap, HashSet};

use burn::backend::capture::TensorId;
use burn::backend::ir::{
    BaseOperationIr, FloatOperationIr, IntOperationIr, NumericOperationIr, OperationIr, ScalarIr,
};
use burn::tensor::{DType, TensorData};

use crate::lower::scalar_bytes;
use crate::proto::GraphProto;

type Folded = Option<Vec<(TensorId, TensorData)>>;

/// Bytes of one element when every element of `data` is identical.
pub(crate) fn splat_value(data: &TensorData) -> Option<Vec<u8>> {
    let n = data.num_elements();
    let bytes = data.as_bytes();
    if n == 0 || bytes.len() % n != 0 {
        return None;
    }
    let es = bytes.len() / n;
    let first = &bytes[..es];
    bytes
        .chunks_exact(es)
        .all(|c| c == first)
        .then(|| first.to_vec())
}

fn elem_size(data: &TensorData) -> usize {
    let n = data.num_elements().max(1);
    data.as_bytes().len() / n
}

/// Build an output of `out_shape` whose element at each coordinate is read from the input
/// coordinate computed by `src` (row-major on both sides).
fn remap(
    data: &TensorData,
    out_shape: &[usize],
    src: impl Fn(&[usize], &mut [usize]),
) -> TensorData {
    let in_shape = data.shape().to_vec();
    let es = elem_size(data);
    let bytes = data.as_bytes();
    let n: usize = out_shape.iter().product();
    let mut strides = vec![1usize; in_shape.len()];
    for i in (0..in_shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * in_shape[i + 1];
    }
    let mut out = Vec::with_capacity(n * es);
    let mut idx = vec![0usize; out_shape.len()];
    let mut coord = vec![0usize; in_shape.len()];
    for _ in 0..n {
        src(&idx, &mut coord);
        let lin: usize = coord.iter().zip(&strides).map(|(c, s)| c * s).sum();
        out.extend_from_slice(&bytes[lin * es..(lin + 1) * es]);
        for a in (0..out_shape.len()).rev() {
            idx[a] += 1;
            if idx[a] < out_shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    TensorData::from_bytes_vec(out, out_shape.to_vec(), data.dtype())
}

fn splat(shape: &[usize], value: ScalarIr, dtype: DType) -> Option<TensorData> {
    if matches!(dtype, DType::Bool(burn::tensor::BoolStore::U32)) {
        return None;
    }
    let (_, one) = scalar_bytes(value, dtype)?;
    let n: usize = shape.iter().product();
    Some(TensorData::from_bytes_vec(
        one.repeat(n),
        shape.to_vec(),
        dtype,
    ))
}

/// Elementwise on f32 / f64 / i64 data; other dtypes are not folded.
fn map_values(
    data: &TensorData,
    f: impl Fn(f64) -> f64,
    fi: impl Fn(i64) -> i64,
) -> Option<TensorData> {
    let shape = data.shape().to_vec();
    match data.dtype() {
        DType::F32 => {
            let v: Vec<f32> = data
                .as_slice::<f32>()
                .ok()?
                .iter()
                .map(|x| f(f64::from(*x)) as f32)
                .collect();
            Some(TensorData::new(v, shape))
        }
        DType::F64 => {
            let v: Vec<f64> = data.as_slice::<f64>().ok()?.iter().map(|x| f(*x)).collect();
            Some(TensorData::new(v, shape))
        }
        DType::I64 => {
            let v: Vec<i64> = data
                .as_slice::<i64>()
                .ok()?
                .iter()
                .map(|x| fi(*x))
                .collect();
            Some(TensorData::new(v, shape))
        }
        _ => None,
    }
}

fn scalar_f(v: ScalarIr) -> f64 {
    crate::lower::scalar_f64(v)
}

fn scalar_i(v: ScalarIr) -> i64 {
    match v {
        ScalarIr::Int(x) => x,
        ScalarIr::UInt(x) => x as i64,
        ScalarIr::Float(x) => x as i64,
        ScalarIr::Bool(b) => i64::from(b),
    }
}

/// Largest constant the folder will create (elements); larger results stay graph nodes.
const MAX_FOLD: usize = 1 << 22;

/// Evaluate `op` on the host when it is cheap and all inputs are in `consts`.
pub(crate) fn fold(
    op: &OperationIr,
    consts: &HashMap<TensorId, TensorData>,
    _opset: i64,
) -> Folded {
    for t in op.outputs() {
        if t.shape.iter().product::<usize>() > MAX_FOLD {
            return None;
        }
    }
    let get = |id: &TensorId| consts.get(id);
    match op {
        OperationIr::BaseFloat(b) | OperationIr::BaseInt(b) | OperationIr::BaseBool(b) => {
            use BaseOperationIr as B;
            match b {
                B::Zeros(c) | B::Empty(c) => Some(vec![(
                    c.out.id,
                    splat(&c.out.shape, ScalarIr::Float(0.0), c.out.dtype)?,
                )]),
                B::Ones(c) => Some(vec![(
                    c.out.id,
                    splat(&c.out.shape, ScalarIr::Float(1.0), c.out.dtype)?,
                )]),
                B::Reshape(r) => {
                    let d = get(&r.input.id)?;
                    let out = TensorData::from_bytes_vec(
                        d.as_bytes().to_vec(),
                        r.out.shape.to_vec(),
                        d.dtype(),
                    );
                    Some(vec![(r.out.id, out)])
                }
                B::SwapDims(s) => {
                    let d = get(&s.input.id)?;
                    let mut perm: Vec<usize> = (0..s.input.shape.len()).collect();
                    perm.swap(s.dim1, s.dim2);
                    Some(vec![(
                        s.out.id,
                        remap(d, &s.out.shape, |i, c| {
                            for (a, p) in perm.iter().enumerate() {
                                c[*p] = i[a];
                            }
                        }),
                    )])
                }
                B::Permute(p) => {
                    let d = get(&p.input.id)?;
                    Some(vec![(
                        p.out.id,
                        remap(d, &p.out.shape, |i, c| {
                            for (a, ax) in p.axes.iter().enumerate() {
                                c[*ax] = i[a];
                            }
                        }),
                    )])
                }
                B::Expand(e) => {
                    let d = get(&e.input.id)?;
                    let in_shape = e.input.shape.to_vec();
                    let off = e.out.shape.len() - in_shape.len();
                    Some(vec![(
                        e.out.id,
                        remap(d, &e.out.shape, |i, c| {
                            for (a, n) in in_shape.iter().enumerate() {
                                c[a] = if *n == 1 { 0 } else { i[a + off] };
                            }
                        }),
                    )])
                }
                B::Slice(s) => {
                    let d = get(&s.tensor.id)?;
                    let params: Vec<(i64, i64)> = (0..s.tensor.shape.len())
                        .map(|a| match s.ranges.get(a) {
                            Some(r) => {
                                let (st, _, step) = crate::lower::onnx_slice(r, s.tensor.shape[a]);
                                (st, step)
                            }
                            None => (0, 1),
                        })
                        .collect();
                    Some(vec![(
                        s.out.id,
                        remap(d, &s.out.shape, |i, c| {
                            for (a, (st, step)) in params.iter().enumerate() {
                                c[a] = (st + step * i[a] as i64) as usize;
                            }
                        }),
                    )])
                }
                B::Cat(c) => {
                    let parts: Vec<&TensorData> = c
                        .tensors
                        .iter()
                        .map(|t| get(&t.id))
                        .collect::<Option<_>>()?;
                    let dim = c.dim;
                    // Concatenate blocks of the outer axes.
                    let outer: usize = c.out.shape[..dim].iter().product();
                    let es = elem_size(parts.first()?);
                    let mut out = Vec::with_capacity(c.out.shape.iter().product::<usize>() * es);
                    for o in 0..outer {
                        for (t, d) in c.tensors.iter().zip(&parts) {
                            let block: usize = t.shape[dim..].iter().product::<usize>() * es;
                            out.extend_from_slice(&d.as_bytes()[o * block..(o + 1) * block]);
                        }
                    }
                    Some(vec![(
                        c.out.id,
                        TensorData::from_bytes_vec(out, c.out.shape.to_vec(), c.out.dtype),
                    )])
                }
                B::Cast(c) => cast(get(&c.input.id)?, c.out.dtype).map(|d| vec![(c.out.id, d)]),
                _ => None,
            }
        }
        OperationIr::NumericFloat(_, n) | OperationIr::NumericInt(_, n) => {
            use NumericOperationIr as N;
            match n {
                N::Full(f) => Some(vec![(f.out.id, splat(&f.out.shape, f.value, f.out.dtype)?)]),
                N::Neg(u) => Some(vec![(
                    u.out.id,
                    map_values(get(&u.input.id)?, |x| -x, |x| -x)?,
                )]),
                N::AddScalar(s) => {
                    let (f, i) = (scalar_f(s.rhs), scalar_i(s.rhs));
                    Some(vec![(
                        s.out.id,
                        map_values(get(&s.lhs.id)?, |x| x + f, |x| x + i)?,
                    )])
                }
                N::SubScalar(s) => {
                    let (f, i) = (scalar_f(s.rhs), scalar_i(s.rhs));
                    Some(vec![(
                        s.out.id,
                        map_values(get(&s.lhs.id)?, |x| x - f, |x| x - i)?,
                    )])
                }
                N::MulScalar(s) => {
                    let (f, i) = (scalar_f(s.rhs), scalar_i(s.rhs));
                    Some(vec![(
                        s.out.id,
                        map_values(get(&s.lhs.id)?, |x| x * f, |x| x * i)?,
                    )])
                }
                _ => None,
            }
        }
        OperationIr::Float(_, FloatOperationIr::IntoInt(c))
        | OperationIr::Int(IntOperationIr::IntoFloat(c)) => {
            cast(get(&c.input.id)?, c.out.dtype).map(|d| vec![(c.out.id, d)])
        }
        _ => None,
    }
}

fn cast(data: &TensorData, to: DType) -> Option<TensorData> {
    if data.dtype() == to {
        return Some(data.clone());
    }
    let numeric = |d: DType| {
        matches!(
            d,
            DType::F32 | DType::F64 | DType::I64 | DType::I32 | DType::U8
        )
    };
    if numeric(data.dtype()) && numeric(to) {
        return Some(data.clone().convert_dtype(to));
    }
    None
}

/// Remove identity renames, dead nodes and unused initializers from a finished graph.
pub(crate) fn tidy(graph: &mut GraphProto) {
    let outputs: HashSet<String> = graph.output.iter().map(|v| v.name.clone()).collect();
    let inputs: HashSet<String> = graph.input.iter().map(|v| v.name.clone()).collect();
    let inits: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();

    // Identity nodes: fold them into their producer when that is another node.
    let mut i = 0;
    while i < graph.node.len() {
        let n = &graph.node[i];
        if n.op_type == "Identity" && n.input.len() == 1 {
            let (src, dst) = (n.input[0].clone(), n.output[0].clone());
            let produced = graph.node.iter().any(|m| m.output.contains(&src));
            let src_free = produced
                && !outputs.contains(&src)
                && !inputs.contains(&src)
                && !inits.contains(&src);
            if src_free {
                // Rename src → dst everywhere.
                graph.node.remove(i);
                for m in &mut graph.node {
                    for s in m.input.iter_mut().chain(m.output.iter_mut()) {
                        if *s == src {
                            *s = dst.clone();
                        }
                    }
                }
                continue;
            }
            if !outputs.contains(&dst) {
                // Interior identity: consumers read src directly.
                graph.node.remove(i);
                for m in &mut graph.node {
                    for s in m.input.iter_mut() {
                        if *s == dst {
                            *s = src.clone();
                        }
                    }
                }
                continue;
            }
        }
        i += 1;
    }

    // Dead nodes, from the end.
    let mut used: HashSet<String> = outputs.clone();
    let mut keep = vec![false; graph.node.len()];
    for (k, n) in graph.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| used.contains(o)) {
            keep[k] = true;
            used.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
        }
    }
    let mut k = 0;
    graph.node.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    graph.initializer.retain(|t| used.contains(&t.name));
}
