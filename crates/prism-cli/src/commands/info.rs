//! `prism info --model NAME`: what a model costs before anyone trains it.

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Args;
use prism_models::onnx::{export_rvt, RvtExport};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{Cost, DimLike};

use super::model_source::ModelSource;

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Everything `info` reports.
#[derive(Debug, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub parameters: Parameters,
    /// Floating-point operations of one window (2 × multiply-accumulates, from tract's cost model
    /// of the exported graph).
    pub flops_per_window: u64,
    pub state_bytes: usize,
    pub inputs: Vec<(String, Vec<Option<usize>>)>,
    pub outputs: Vec<(String, Vec<usize>)>,
    pub classes: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct Parameters {
    pub backbone: usize,
    pub fpn: usize,
    pub head: usize,
    pub total: usize,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let info = model_info(&args.source)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(());
    }
    let m = |n: usize| n as f64 / 1e6;
    outln!("model        {}", info.name)?;
    outln!("classes      {}", info.classes.join(", "))?;
    outln!(
        "parameters   {:.3} M  (backbone {:.3} M, FPN {:.3} M, head {:.3} M)",
        m(info.parameters.total),
        m(info.parameters.backbone),
        m(info.parameters.fpn),
        m(info.parameters.head)
    )?;
    outln!(
        "compute      {:.2} GFLOPs per window",
        info.flops_per_window as f64 / 1e9
    )?;
    outln!(
        "state        {} bytes ({:.2} MB, 8 tensors)",
        info.state_bytes,
        info.state_bytes as f64 / 1e6
    )?;
    for (name, shape) in &info.inputs {
        let dims: Vec<String> = shape
            .iter()
            .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
            .collect();
        outln!("input        {name} [{}]", dims.join(", "))?;
    }
    for (name, shape) in &info.outputs {
        outln!("output       {name} {shape:?}")?;
    }
    Ok(())
}

pub fn model_info(source: &ModelSource) -> Result<ModelInfo> {
    let device = Device::flex();
    let (card, model) = source.load(&device)?;
    let parts = model.param_breakdown();
    let spec = card.model_spec(Some(1));
    let onnx = export_rvt(&model, &card, &RvtExport::default(), &device)
        .with_context(|| format!("capturing {}", card.name))?;
    let flops = flops(&onnx.to_bytes())?;
    let state_bytes = spec
        .state
        .iter()
        .map(|s| s.shape.iter().product::<usize>() * 4)
        .sum();
    let anchors = spec.num_anchors().unwrap_or(0);
    let mut outputs = vec![(
        spec.output.name.clone(),
        vec![1, anchors, 5 + spec.classes.len()],
    )];
    outputs.extend(
        spec.state
            .iter()
            .map(|s| (s.output.clone(), s.shape.clone())),
    );
    let mut inputs = vec![(spec.input.name.clone(), spec.input.shape.clone())];
    inputs.extend(
        spec.state
            .iter()
            .map(|s| (s.input.clone(), s.shape.iter().map(|&d| Some(d)).collect())),
    );
    Ok(ModelInfo {
        name: card.name.clone(),
        parameters: Parameters {
            backbone: parts.backbone,
            fpn: parts.fpn,
            head: parts.head,
            total: parts.total,
        },
        flops_per_window: flops,
        state_bytes,
        inputs,
        outputs,
        classes: card.data.classes.clone(),
    })
}

/// 2 × the multiply-accumulates tract's cost model counts over every node of the graph.
fn flops(onnx: &[u8]) -> Result<u64> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .map_err(|e| anyhow::anyhow!("tract could not load the exported graph: {e:#}"))?;
    let mut fma: u64 = 0;
    for node in model.nodes() {
        let inputs = model
            .node_input_facts(node.id)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let costs = node
            .op
            .cost(&inputs)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        for (cost, count) in costs {
            if matches!(cost, Cost::FMA(_)) {
                fma += count.to_usize().map_err(|e| anyhow::anyhow!("{e:#}"))? as u64;
            }
        }
    }
    Ok(2 * fma)
}
