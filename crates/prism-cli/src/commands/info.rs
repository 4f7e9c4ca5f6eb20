//! `prism info --model NAME`: what a model costs before anyone trains it; `prism info --model
//! FILE.onnx`: what an exported file holds (its metadata: classes, inputs, state, precision and
//! how it was quantized).

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
    if let Some(file) = args
        .source
        .model
        .as_deref()
        .map(std::path::Path::new)
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
    {
        return onnx_info(file, args.json);
    }
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

/// Prints what an exported file's `prism` metadata says, and its size.
fn onnx_info(path: &std::path::Path, json: bool) -> Result<()> {
    use prost::Message as _;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("{} is not an ONNX model: {e}", path.display()))?;
    let entry = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "prism")
        .with_context(|| {
            format!(
                "{} has no `prism` metadata; it was not written by `prism export onnx`",
                path.display()
            )
        })?;
    let spec = prism_core::ModelSpec::from_json(&entry.value)
        .with_context(|| format!("{}: the prism metadata", path.display()))?;
    let nodes = proto.graph.as_ref().map_or(0, |g| g.node.len());
    if json {
        let value = serde_json::json!({
            "file": path.display().to_string(),
            "bytes": bytes.len(),
            "nodes": nodes,
            "spec": spec,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    outln!(
        "file         {} ({:.1} MB, {nodes} nodes)",
        path.display(),
        bytes.len() as f64 / 1e6
    )?;
    outln!("model        {}", spec.model)?;
    outln!("classes      {}", spec.classes.join(", "))?;
    outln!("precision    {}", spec.precision.name())?;
    if let Some(q) = &spec.quantization {
        outln!(
            "quantized    {} nodes, {} ({}); weights {}, activations {}; {} calibration windows",
            q.quantized_nodes,
            q.format.to_uppercase(),
            q.method,
            q.weights,
            q.activations,
            q.calibration_windows
        )?;
        for node in &q.float_nodes {
            outln!("  float      {} ({}): {}", node.name, node.op, node.reason)?;
        }
    }
    let dims = |shape: &[Option<usize>]| {
        shape
            .iter()
            .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!(
        "input        {} [{}]",
        spec.input.name,
        dims(&spec.input.shape)
    )?;
    for s in &spec.state {
        outln!("state        {} -> {} {:?}", s.input, s.output, s.shape)?;
    }
    outln!(
        "output       {} (strides {:?})",
        spec.output.name,
        spec.output.strides
    )?;
    Ok(())
}
