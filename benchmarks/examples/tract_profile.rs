//! Where tract spends its time on an ONNX file: every node of the optimised plan timed over a
//! few runs (every input filled with the same fixed pattern), summed by operator kind, plus the
//! slowest nodes.
//!
//! usage: cargo run --release -p prism-benchmarks --example tract_profile -- MODEL.onnx [RUNS] [THREADS]
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Instant;

use anyhow::{Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .context("usage: tract_profile MODEL.onnx [RUNS] [THREADS]")?;
    let runs: usize = args.get(2).map(|v| v.parse()).transpose()?.unwrap_or(5);
    let threads: usize = args.get(3).map(|v| v.parse()).transpose()?.unwrap_or(1);
    let model = tract_onnx::onnx().model_for_path(path)?.into_optimized()?;
    let options = tract_onnx::tract_core::runtime::RunOptions {
        executor: (threads > 1).then(|| {
            tract_onnx::tract_core::tract_linalg::multithread::Executor::multithread(threads)
        }),
        ..Default::default()
    };
    let plan = model.into_runnable_with_options(&options)?;
    let inputs: TVec<TValue> = plan
        .model()
        .input_outlets()?
        .iter()
        .map(|o| {
            let fact = plan.model().outlet_fact(*o)?;
            let shape: Vec<usize> = fact
                .shape
                .as_concrete()
                .context("symbolic input shape")?
                .to_vec();
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| ((i * 7919) % 11) as f32 * 0.1).collect();
            Ok(Tensor::from_shape(&shape, &data)?.into_tvalue())
        })
        .collect::<Result<_>>()?;
    let mut state = SimpleState::new(&plan)?;
    let mut per_node: HashMap<usize, f64> = HashMap::new();
    let mut total = 0.0;
    for run in 0..runs + 1 {
        let start = Instant::now();
        let mut times: Vec<(usize, f64)> = Vec::new();
        state.run_plan_with_eval(inputs.clone(), |ctx, op_state, node, input| {
            let t = Instant::now();
            let out = eval(ctx, op_state, node, input);
            times.push((node.id, t.elapsed().as_secs_f64() * 1e3));
            out
        })?;
        if run > 0 {
            total += start.elapsed().as_secs_f64() * 1e3;
            for (id, ms) in times {
                *per_node.entry(id).or_default() += ms;
            }
        }
    }
    let runs = runs as f64;
    let model = plan.model();
    let mut by_kind: HashMap<String, (f64, usize)> = HashMap::new();
    for (&id, &ms) in &per_node {
        let e = by_kind
            .entry(model.node(id).op().name().to_string())
            .or_default();
        e.0 += ms / runs;
        e.1 += 1;
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    let mut report = String::new();
    writeln!(
        report,
        "{path}: {:.1} ms per run ({threads} threads), {} nodes",
        total / runs,
        model.nodes().len()
    )?;
    for (kind, (ms, n)) in kinds.iter().take(20) {
        writeln!(
            report,
            "{kind:32} {ms:8.2} ms {:5.1}%  ({n} nodes)",
            100.0 * ms * runs / total
        )?;
    }
    let mut nodes: Vec<_> = per_node.into_iter().collect();
    nodes.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (id, ms) in nodes.iter().take(25) {
        let node = model.node(*id);
        let facts: Vec<String> = model
            .node_input_facts(*id)?
            .iter()
            .map(|f| format!("{:?}", f.shape))
            .collect();
        writeln!(
            report,
            "{:7.3} ms  {} {}  in {}",
            ms / runs,
            node.op().name(),
            node.name,
            facts.join(" ")
        )?;
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    match std::io::stdout().write_all(report.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
