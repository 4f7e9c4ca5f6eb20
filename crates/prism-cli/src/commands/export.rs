//! `prism export onnx`: a model to an ONNX file that carries its own metadata, optionally
//! verified against Burn in tract and ONNX Runtime.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Device, TensorData};
use clap::{Args, Subcommand};
use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
use prism_export::verify::{verify, OnnxRunner, VerifyOptions};
use prism_export::ExportError;
use prism_models::onnx::{
    export_rvt, input_names, output_names, sample_inputs, step, timed_step, RvtExport,
};

use super::model_source::ModelSource;

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write an ONNX file (histogram + recurrent state in, detections + new state out).
    Onnx(OnnxArgs),
}

#[derive(Debug, Args)]
pub struct OnnxArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// The ONNX file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Make the batch axis dynamic.
    #[arg(long)]
    pub dynamic_batch: bool,
    /// ONNX operator set (17: LayerNormalization; 20: also Gelu).
    #[arg(long, default_value_t = prism_export::DEFAULT_OPSET)]
    pub opset: i64,
    /// Run Burn, tract and ONNX Runtime on the same random inputs and compare (fails above 1e-4
    /// relative error).
    #[arg(long)]
    pub verify: bool,
    /// Numeric precision of the file: fp32, or fp16 for GPU backends (float32 inputs and
    /// outputs kept, casts at the edges).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: PrecisionArg,
    /// For fp16: run these windows (a prepared dataset or an event recording) in float32 first
    /// and keep in float32 every node whose outputs exceed a quarter of the fp16 range there.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// ONNX Runtime library for `--verify` (default: ORT_DYLIB_PATH or the provisioned one).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    Fp32,
    Fp16,
}

/// Relative error `--verify` accepts for fp16 files: fp16 keeps 11 significant bits
/// (about 5e-4 per rounding), and the error grows through the layers.
const FP16_TOLERANCE: f64 = 2e-2;

pub fn run(cmd: ExportCommand) -> Result<()> {
    match cmd {
        ExportCommand::Onnx(args) => export_onnx(&args),
    }
}

pub fn export_onnx(args: &OnnxArgs) -> Result<()> {
    let device = Device::flex();
    if args.source.is_multimodal() {
        return export_multimodal(args, &device);
    }
    if args.source.is_sequence() {
        return export_sequence(args, &device);
    }
    let (card, model) = args.source.load(&device)?;
    let started = Instant::now();
    let settings = RvtExport {
        opset: args.opset,
        dynamic_batch: args.dynamic_batch,
    };
    let onnx = export_rvt(&model, &card, &settings, &device)
        .with_context(|| format!("exporting {}", card.name))?;
    let bytes = write_file(&onnx, args)?;
    let stats = onnx.stats();
    outln!(
        "exported {} to {} in {:.2} s: {} bytes, {} nodes, opset {}{}",
        card.name,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        bytes,
        stats.nodes,
        args.opset,
        args.batch_note()
    )?;
    if args.verify {
        let runners = verify_runners(args)?;
        let runners: Vec<&dyn OnnxRunner> = runners.iter().map(|r| r as &dyn OnnxRunner).collect();
        let options = verify_options(args.precision);
        let report = verify_rvt(&model, &card, &args.out, &runners, &options)
            .context("verifying the export")?;
        print_verified(&report, &options, &runners)?;
    }
    Ok(())
}

/// Runs `model` (of `card`) in Burn and the file at `path` in every runner on the same random
/// inputs and compares the outputs; an SSM model gets a 20 ms duration, not the card's, so the
/// check covers the duration input's path.
pub(crate) fn verify_rvt(
    model: &prism_models::rvt::Rvt,
    card: &prism_models::zoo::ModelCard,
    path: &std::path::Path,
    runners: &[&dyn OnnxRunner],
    options: &VerifyOptions,
) -> Result<prism_export::verify::VerifyReport> {
    let device = Device::flex();
    let (inputs, outputs) = (input_names(card), output_names(card));
    let report = if card.duration_input().is_some() {
        let (histogram, state) = sample_inputs(card, &device);
        let dt_s = burn::tensor::Tensor::<2>::full([1, 1], 0.02, &device);
        let sample = (histogram, state, dt_s);
        verify(
            model, &sample, timed_step, path, &inputs, &outputs, runners, options,
        )
    } else {
        let sample = sample_inputs(card, &device);
        verify(
            model, &sample, step, path, &inputs, &outputs, runners, options,
        )
    };
    Ok(report?)
}

impl OnnxArgs {
    /// What the "exported …" line adds for a dynamic batch axis.
    fn batch_note(&self) -> &'static str {
        if self.dynamic_batch {
            ", dynamic batch"
        } else {
            ""
        }
    }
}

/// `prism export onnx` of an RGB + thermal + event detector: `image [1, 5, H, W]` in,
/// raw `detections [1, A, 5 + K]` out, its spec (classes, input size) in the metadata.
fn export_multimodal(args: &OnnxArgs, device: &Device) -> Result<()> {
    let (card, model) = args.source.load_multimodal(device)?;
    let started = Instant::now();
    let onnx = prism_models::onnx::export_mm(
        &model,
        &card.name,
        &card.data.classes,
        card.model.input_size,
        args.dynamic_batch,
        device,
    )
    .with_context(|| format!("exporting {}", card.name))?;
    let bytes = write_file(&onnx, args)?;
    outln!(
        "exported {} to {} in {:.2} s: {} bytes, {} nodes{}",
        card.name,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        bytes,
        onnx.stats().nodes,
        args.batch_note(),
    )?;
    if args.verify {
        let runners = verify_runners(args)?;
        let runners: Vec<&dyn OnnxRunner> = runners.iter().map(|r| r as &dyn OnnxRunner).collect();
        let [h, w] = card.model.input_size;
        let sample =
            burn::tensor::Tensor::<4>::zeros([1, prism_models::mm::MM_CHANNELS, h, w], device);
        let options = verify_options(args.precision);
        let report = verify(
            &model,
            &sample,
            |m: &prism_models::mm::MmDetector, x| m.forward(x),
            &args.out,
            &["image".to_string()],
            &["detections".to_string()],
            &runners,
            &options,
        )
        .context("verifying the export")?;
        print_verified(&report, &options, &runners)?;
    }
    Ok(())
}

/// `prism export onnx` of a next-vector sequence model: `context [N, C, D]` in, `next [N, D]`
/// out, a `next-vector` spec (context, width, architecture) in the metadata.
fn export_sequence(args: &OnnxArgs, device: &Device) -> Result<()> {
    let (card, model) = args.source.load_sequence(device)?;
    let started = Instant::now();
    let onnx =
        prism_models::onnx::export_seq(&model, &card, args.opset, args.dynamic_batch, device)
            .with_context(|| format!("exporting {}", card.name))?;
    let bytes = write_file(&onnx, args)?;
    outln!(
        "exported {} to {} in {:.2} s: {} bytes, {} nodes{}",
        card.name,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        bytes,
        onnx.stats().nodes,
        args.batch_note()
    )?;
    if args.verify {
        let runners = verify_runners(args)?;
        let runners: Vec<&dyn OnnxRunner> = runners.iter().map(|r| r as &dyn OnnxRunner).collect();
        let options = verify_options(args.precision);
        let report = verify(
            &model,
            &prism_models::onnx::seq_sample_input(
                &card,
                if args.dynamic_batch { 2 } else { 1 },
                device,
            ),
            |m: &prism_models::seq::SeqModel, x| m.forward(x),
            &args.out,
            &[prism_models::seq::card::INPUT_NAME.to_string()],
            &[prism_models::seq::card::OUTPUT_NAME.to_string()],
            &runners,
            &options,
        )
        .context("verifying the export")?;
        print_verified(&report, &options, &runners)?;
    }
    Ok(())
}

/// Writes the export to `--out` (its folder created) in the precision asked for; returns the
/// file's size.
fn write_file(onnx: &prism_export::OnnxModel, args: &OnnxArgs) -> Result<u64> {
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(match args.precision {
        PrecisionArg::Fp32 => onnx
            .save(&args.out)
            .with_context(|| format!("writing {}", args.out.display()))?,
        PrecisionArg::Fp16 => write_fp16(&onnx.to_bytes(), args)?,
    })
}

/// The tolerance `--verify` applies for the file's precision.
fn verify_options(precision: PrecisionArg) -> VerifyOptions {
    VerifyOptions {
        tolerance: match precision {
            PrecisionArg::Fp32 => VerifyOptions::default().tolerance,
            PrecisionArg::Fp16 => FP16_TOLERANCE,
        },
        ..VerifyOptions::default()
    }
}

/// Prints `--verify`'s report and its one-line verdict.
fn print_verified(
    report: &prism_export::verify::VerifyReport,
    options: &VerifyOptions,
    runners: &[&dyn OnnxRunner],
) -> Result<()> {
    out!("{report}")?;
    outln!(
        "verified: max relative error {:.2e} (limit {:.0e}) in {}",
        report.max_rel(),
        options.tolerance,
        runners
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(" and ")
    )?;
    Ok(())
}

/// tract always; ONNX Runtime where its library is found where the user's environment says
/// (--ort-library, ORT_DYLIB_PATH, PRISM_ENV), else skipped with how to get it.
fn verify_runners(args: &OnnxArgs) -> Result<Vec<EngineRunner>> {
    cpu_runners(args.ort_library.as_deref())
}

/// tract, and ONNX Runtime's CPU provider where its library is found (a line says why not).
pub(crate) fn cpu_runners(ort_library: Option<&std::path::Path>) -> Result<Vec<EngineRunner>> {
    let mut backends = vec![Backend::Tract];
    match prism_deploy::engine::onnxruntime::library_path(ort_library) {
        Ok(_) => backends.push(Backend::OrtCpu),
        Err(prism_deploy::DeployError::Runtime(why)) => outln!("ONNX Runtime skipped: {why}")?,
        Err(e) => outln!("ONNX Runtime skipped: {e}")?,
    }
    Ok(backends
        .into_iter()
        .map(|backend| EngineRunner {
            backend,
            ort_library: ort_library.map(std::path::Path::to_path_buf),
        })
        .collect())
}

/// Converts the float32 export to float16 (keeping in float32 what overflows on `--calib`
/// data) and writes it; returns the size.
fn write_fp16(float32: &[u8], args: &OnnxArgs) -> Result<u64> {
    use prism_export::{fp16, quantize};
    let proto = quantize::read_model(float32)?;
    let mut keep = std::collections::HashSet::new();
    if let Some(calib) = &args.calib {
        let spec_json = proto
            .metadata_props
            .iter()
            .find(|p| p.key == quantize::METADATA_KEY)
            .map(|p| p.value.clone())
            .context("the export has no prism metadata")?;
        let spec = prism_core::ModelSpec::from_json(&spec_json)?;
        let feeds = super::calibration::feeds(&spec);
        let mut data = super::calibration::source(calib, "train", &spec, &feeds, 64)?;
        let over = fp16::overflowing_nodes(&proto, &feeds, data.as_mut(), fp16::FP16_MAX / 4.0)?;
        eprintln!(
            "fp16: {} node(s) exceed a quarter of the fp16 range on {} and stay float32{}",
            over.len(),
            calib.display(),
            if over.is_empty() {
                String::new()
            } else {
                format!(": {}", over.join(", "))
            }
        );
        keep.extend(over);
    }
    let half = fp16::to_fp16(&proto, &keep)?;
    let bytes = prost::Message::encode_to_vec(&half);
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(bytes.len() as u64)
}

/// Runs an ONNX file with a deployment engine, for `--verify`.
pub(crate) struct EngineRunner {
    backend: Backend,
    ort_library: Option<PathBuf>,
}

impl OnnxRunner for EngineRunner {
    fn name(&self) -> String {
        self.backend.name().to_string()
    }

    fn run(
        &self,
        model: &Path,
        inputs: &[(String, TensorData)],
    ) -> prism_export::Result<Vec<TensorData>> {
        let err = |e: &dyn std::fmt::Display| {
            ExportError::Verify(format!("{}: {e}", self.backend.name()))
        };
        let mut options = EngineOptions::new(self.backend);
        options.ort_library = self.ort_library.clone();
        let engine = Engine::load(model, &options).map_err(|e| err(&e))?;
        let owned: Vec<(String, Vec<usize>, Vec<f32>)> = inputs
            .iter()
            .map(|(name, data)| {
                let values = data
                    .clone()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| err(&format!("{e:?}")))?;
                Ok((name.clone(), data.shape().to_vec(), values))
            })
            .collect::<prism_export::Result<_>>()?;
        let views: Vec<TensorView<'_>> = owned
            .iter()
            .map(|(name, shape, data)| TensorView::new(name, shape, data))
            .collect();
        let outputs = engine.run(&views).map_err(|e| err(&e))?;
        Ok(outputs
            .into_iter()
            .map(|t| TensorData::new(t.data, t.shape))
            .collect())
    }
}
