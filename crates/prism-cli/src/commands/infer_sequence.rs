//! `prism infer` on a next-vector sequence model: a `.npy` of contexts (`[C, D]` for one,
//! `[N, C, D]` for many) in, one JSON line per context with the predicted next vector out.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use prism_deploy::engine::{Engine, TensorView};
use serde::Serialize;

/// One line of output: the context's index and the predicted (unit-length) next vector.
#[derive(Serialize)]
struct Line<'a> {
    index: usize,
    next: &'a [f32],
}

/// Runs every context of `input` through `engine`, one at a time (the exported batch may be
/// static), and writes a line per context; returns how many ran.
pub fn run(engine: &Engine, input: &Path, out: &mut dyn Write) -> Result<usize> {
    let spec = engine.spec();
    let seq = spec
        .sequence
        .as_ref()
        .context("the model's spec has no sequence section")?;
    let data =
        prism_export::npy::read(input).with_context(|| format!("reading {}", input.display()))?;
    let shape = data.shape().to_vec();
    let values: Vec<f32> = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", input.display()))?;
    let count = match shape.as_slice() {
        [c, d] if *c == seq.context && *d == seq.dim => 1,
        [n, c, d] if *c == seq.context && *d == seq.dim => *n,
        _ => bail!(
            "{} has shape {shape:?}; the model reads contexts [{}, {}] or [N, {}, {}]",
            input.display(),
            seq.context,
            seq.dim,
            seq.context,
            seq.dim
        ),
    };
    let one = seq.context * seq.dim;
    let input_shape = [1, seq.context, seq.dim];
    for index in 0..count {
        let context = &values[index * one..(index + 1) * one];
        let view = TensorView::new(&spec.input.name, &input_shape, context);
        let outputs = engine.run(&[view])?;
        let next = outputs
            .iter()
            .find(|o| o.name == spec.output.name)
            .context("the model did not return its output")?;
        serde_json::to_writer(
            &mut *out,
            &Line {
                index,
                next: &next.data,
            },
        )?;
        writeln!(out)?;
    }
    Ok(count)
}
