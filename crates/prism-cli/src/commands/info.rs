//! `prism info --model NAME`: what a model costs before anyone trains it; `prism info --model
//! FILE.onnx`: what an exported file holds (its metadata: classes, inputs, state, precision and
//! how it was quantized).

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Args;
use prism_models::mit::MitConfig;
use prism_models::onnx::{export_mit, export_rvt, RvtExport};
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
    /// The recurrent cell (`model.memory`): `lstm`, `dws-lstm` or `ssm`.
    pub memory: prism_models::zoo::Memory,
    /// The blocks' attention (`model.attention`): `block-grid` (RVT's) or a kind.
    pub attention: String,
    /// Strides of the FPN levels the head reads (`model.fpn_scales`).
    pub fpn_strides: Vec<usize>,
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
    /// Of the backbone: the four stages' recurrent cells.
    pub memory: usize,
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
    if let Some(name) = args
        .source
        .model
        .as_deref()
        .filter(|n| super::train::names_a_multimodal_card(n))
    {
        return mm_info(name, args.json);
    }
    if args.source.is_sequence() {
        return seq_info(&args.source, args.json);
    }
    if let Some(config) = args.source.model.as_deref().and_then(MitConfig::preset) {
        if !args.source.overrides.is_empty() {
            anyhow::bail!("--set changes a model card; a bare MiT backbone preset has none");
        }
        return mit_info(
            args.source.model.as_deref().unwrap_or_default(),
            &config,
            args.json,
        );
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
    let strides: Vec<String> = info.fpn_strides.iter().map(|s| s.to_string()).collect();
    outln!(
        "network      attention {}, memory {} ({:.3} M), FPN {} scales (strides {})",
        info.attention,
        info.memory.name(),
        m(info.parameters.memory),
        info.fpn_strides.len(),
        strides.join(", ")
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
        memory: card.model.memory,
        attention: card
            .model
            .attention
            .map_or(prism_models::zoo::RVT_ATTENTION, |k| k.name())
            .to_string(),
        fpn_strides: card.rvt_config().strides(),
        parameters: Parameters {
            backbone: parts.backbone,
            memory: parts.memory,
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

/// The input size MiT's compute is reported at (width x height of the seed's 640x512 images).
const MIT_INFO_HW: [usize; 2] = [512, 640];

/// What `info` reports for a MiT backbone (`mit-b0` … `mit-b5`, 3-channel RGB stem).
#[derive(Debug, serde::Serialize)]
pub struct MitInfo {
    pub name: String,
    /// Parameters of each stage: patch embedding, blocks and the stage's norm.
    pub stage_parameters: [usize; 4],
    pub total_parameters: usize,
    pub channels: [usize; 4],
    pub depths: [usize; 4],
    pub strides: [usize; 4],
    /// Floating-point operations of one 640x512 image (tract's cost model of the export).
    pub flops_640x512: u64,
}

fn mit_info(name: &str, config: &MitConfig, json: bool) -> Result<()> {
    let device = Device::flex();
    let model = config.init(&device);
    let mut stage_parameters = [0usize; 4];
    for p in prism_models::rvt::params::list_tensors(&model) {
        let n: usize = p.shape.iter().product();
        let stage = ["patch_embed", "block", "norm"].iter().find_map(|prefix| {
            p.path
                .strip_prefix(prefix)
                .and_then(|rest| rest.chars().next())
                .and_then(|c| c.to_digit(10))
        });
        match stage {
            Some(s @ 1..=4) => stage_parameters[s as usize - 1] += n,
            _ => anyhow::bail!("{}: a parameter outside the four stages", p.path),
        }
    }
    let onnx =
        export_mit(&model, MIT_INFO_HW, &device).with_context(|| format!("capturing {name}"))?;
    let info = MitInfo {
        name: name.to_string(),
        stage_parameters,
        total_parameters: stage_parameters.iter().sum(),
        channels: config.embed_dims,
        depths: config.depths,
        strides: config.strides(),
        flops_640x512: flops(&onnx.to_bytes())?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(());
    }
    let m = |n: usize| n as f64 / 1e6;
    outln!(
        "model        {} (MiT backbone, {}-channel stem)",
        info.name,
        config.in_channels
    )?;
    outln!("parameters   {:.3} M", m(info.total_parameters))?;
    for i in 0..4 {
        outln!(
            "stage {}      {:.3} M  ({} channels, {} blocks, stride {}, {} heads, reduction {})",
            i + 1,
            m(info.stage_parameters[i]),
            info.channels[i],
            info.depths[i],
            info.strides[i],
            config.num_heads[i],
            config.sr_ratios[i]
        )?;
    }
    outln!(
        "compute      {:.2} GFLOPs per 640x512 image",
        info.flops_640x512 as f64 / 1e9
    )?;
    Ok(())
}

/// What `info` reports for an RGB + thermal + event detector (`mm-mit-b1-cssa-s3` …).
#[derive(Debug, serde::Serialize)]
pub struct MmInfo {
    pub name: String,
    /// The RGB stream (or the single stream of `-rgb` and `-early`).
    pub rgb_stream: usize,
    /// The thermal + event stream (0 for one stream).
    pub aux_stream: usize,
    /// The fusion blocks per stage (0 where a stage does not fuse).
    pub fusion_per_stage: [usize; 4],
    pub neck: usize,
    /// The head, sized for `classes` classes.
    pub head: usize,
    pub classes: usize,
    pub total: usize,
    /// Floating-point operations of one 640x512 image (tract's cost model of the export).
    pub flops_640x512: u64,
}

/// Classes the head is sized for in `info` (each further class adds `hidden + 1` parameters).
const MM_INFO_CLASSES: usize = 1;

fn mm_info(name: &str, json: bool) -> Result<()> {
    use prism_models::mm::{MmDetector, MmDetectorConfig};
    use prism_models::rvt::params::count_params;
    let device = Device::flex();
    // A card (shipped or a file) brings its classes and fusion settings; any other `mm-*` name
    // is read as an architecture with default settings.
    let (name, config) = match prism_models::mm::MmCard::resolve(name) {
        Ok(card) => (card.name.clone(), card.detector_config()?),
        Err(_) if !prism_models::zoo::looks_like_a_path(name) => (
            name.to_string(),
            MmDetectorConfig::from_name(name, MM_INFO_CLASSES)?,
        ),
        Err(e) => return Err(e.into()),
    };
    let name = name.as_str();
    let model = config.init(&device)?;
    let enc = &model.encoder;
    let [h, w] = MIT_INFO_HW;
    let sample = burn::tensor::Tensor::<4>::zeros([1, 5, h, w], &device);
    let forward = |m: &MmDetector, x| vec![m.forward(x)];
    let onnx = prism_export::export(
        &model,
        sample,
        forward,
        &prism_export::ExportOptions::default(),
    )
    .with_context(|| format!("capturing {name}"))?;
    let info = MmInfo {
        name: name.to_string(),
        rgb_stream: count_params(&enc.rgb),
        aux_stream: enc.aux.as_ref().map_or(0, count_params),
        fusion_per_stage: enc.fusion_params(),
        neck: count_params(&model.fpn),
        head: count_params(&model.yolox_head),
        classes: config.num_classes,
        total: count_params(&model),
        flops_640x512: flops(&onnx.to_bytes())?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(());
    }
    let m = |n: usize| n as f64 / 1e6;
    outln!(
        "model        {} (RGB + thermal + event detector)",
        info.name
    )?;
    outln!("parameters   {:.3} M", m(info.total))?;
    outln!("rgb stream   {:.3} M", m(info.rgb_stream))?;
    if info.aux_stream > 0 {
        outln!(
            "aux stream   {:.3} M  (thermal + event, 2-channel stem)",
            m(info.aux_stream)
        )?;
    }
    let channels = config.encoder.mit()?.embed_dims;
    for (i, n) in info.fusion_per_stage.iter().enumerate() {
        if *n > 0 || !config.encoder.fusion_stages.is_empty() {
            let what = match (*n, &config.encoder.fusion) {
                (0, _) if !config.encoder.fusion_stages.contains(&(i + 1)) => {
                    "mean of the streams".to_string()
                }
                (_, Some(f)) => f.kind().to_uppercase(),
                _ => String::new(),
            };
            outln!(
                "fusion s{}    {n} parameters  ({what}, {} channels)",
                i + 1,
                channels[i]
            )?;
        }
    }
    outln!(
        "neck         {:.3} M  (YOLOX PAFPN on stages 2-4)",
        m(info.neck)
    )?;
    outln!(
        "head         {:.3} M  (YOLOX, {} class)",
        m(info.head),
        info.classes
    )?;
    outln!(
        "compute      {:.2} GFLOPs per 640x512 image",
        info.flops_640x512 as f64 / 1e9
    )?;
    Ok(())
}

/// 2 × the multiply-accumulates tract's cost model counts over every node of the graph.
pub(crate) fn flops(onnx: &[u8]) -> Result<u64> {
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
    if let Some(seq) = &spec.sequence {
        outln!(
            "task         next-vector ({}, {} context vectors of width {}, unit-length output)",
            seq.architecture,
            seq.context,
            seq.dim
        )?;
    } else {
        outln!("classes      {}", spec.classes.join(", "))?;
    }
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
    if let Some(name) = &spec.duration_input {
        outln!("duration     {name} [N, 1]: each window's length in seconds (SSM memory)")?;
    }
    if spec.task.is_detection() {
        outln!(
            "output       {} (strides {:?})",
            spec.output.name,
            spec.output.strides
        )?;
    } else {
        outln!("output       {}", spec.output.name)?;
    }
    Ok(())
}

/// What `info` reports for a next-vector sequence model (`seq-mlp` …).
#[derive(Debug, serde::Serialize)]
pub struct SeqInfo {
    pub name: String,
    pub architecture: String,
    pub context: usize,
    pub dim: usize,
    pub parameters: usize,
    /// Floating-point operations of one context (tract's cost model of the export).
    pub flops_per_context: u64,
}

fn seq_info(source: &ModelSource, json: bool) -> Result<()> {
    let device = Device::flex();
    let (card, model) = source.load_sequence(&device)?;
    let onnx =
        prism_models::onnx::export_seq(&model, &card, prism_export::DEFAULT_OPSET, false, &device)
            .with_context(|| format!("capturing {}", card.name))?;
    let info = SeqInfo {
        name: card.name.clone(),
        architecture: card.model.architecture.name().to_string(),
        context: card.model.context,
        dim: card.model.dim,
        parameters: prism_models::seq::parameter_count(&model),
        flops_per_context: flops(&onnx.to_bytes())?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(());
    }
    outln!("model        {} (next-vector sequence model)", info.name)?;
    outln!(
        "network      {}: {} context vectors of width {} -> the next vector",
        info.architecture,
        info.context,
        info.dim
    )?;
    outln!("parameters   {:.3} M", info.parameters as f64 / 1e6)?;
    outln!(
        "compute      {:.2} MFLOPs per context",
        info.flops_per_context as f64 / 1e6
    )?;
    Ok(())
}
