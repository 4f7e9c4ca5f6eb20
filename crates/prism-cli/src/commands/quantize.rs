//! `prism quantize`: static INT8 post-training quantization of an exported model (QDQ),
//! calibrated on real windows: a prepared dataset or an event recording, streamed with the
//! recurrent state carried. The library side is `prism_export::quantize`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use prism_core::ModelSpec;
use prism_export::quantize::{
    self, ActivationType, CalibrationData, Method, Pass, QuantizeOptions,
};

use super::calibration;
use super::progress::Meter;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// The largest magnitude seen.
    Minmax,
    /// A percentile of |x| (`--percentile`).
    Percentile,
    /// TensorRT's KL-divergence threshold.
    Entropy,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActivationsArg {
    /// Signed, symmetric (S8S8): what TensorRT requires. ONNX Runtime on x86 CPUs fuses few
    /// S8S8 convolutions and runs the rest as dequantize + float (slower than fp32 there).
    Int8,
    /// Unsigned, asymmetric (U8S8): for ONNX Runtime on x86 CPUs, with or without VNNI (the
    /// layout its x86 int8 convolutions and matrix products fuse).
    Uint8,
}

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The float32 model (`prism export onnx`).
    #[arg(long)]
    pub model: PathBuf,
    /// Calibration data: a prepared dataset folder (`prism data prepare`, or the data `prism
    /// train` made) or an event recording (.dat, .raw, .h5).
    #[arg(long)]
    pub calib: PathBuf,
    /// Where to write the quantized model.
    #[arg(long)]
    pub out: PathBuf,
    /// How activation ranges are chosen.
    #[arg(long, value_enum, default_value = "percentile")]
    pub method: MethodArg,
    /// The percentile of `--method percentile`.
    #[arg(long, default_value_t = 99.999)]
    pub percentile: f64,
    /// One weight scale per tensor instead of per output channel.
    #[arg(long)]
    pub per_tensor: bool,
    /// Activation type.
    #[arg(long, value_enum, default_value = "int8")]
    pub activations: ActivationsArg,
    /// 7-bit weights, for ONNX Runtime on x86 CPUs without VNNI (its int8 kernels saturate
    /// with full-range weights there and drift from the model's arithmetic).
    #[arg(long)]
    pub reduce_range: bool,
    /// Keep nodes matching this glob (node name or op type) in float; repeatable.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Quantize nodes the defaults keep in float (first layer, head outputs, recurrent gates)
    /// when they match this glob; repeatable.
    #[arg(long)]
    pub include: Vec<String>,
    /// Calibration windows: spread over the sequences of a dataset, each read from its start
    /// with the state carried; the first ones of a recording.
    #[arg(long, default_value_t = 240)]
    pub calib_windows: usize,
    /// Split of a prepared dataset to calibrate on.
    #[arg(long, default_value = "train")]
    pub calib_split: String,
    /// Also write the calibration windows to this folder (`windows.npy`, one model input per
    /// window, and `starts.npy`, 1 where a sequence starts), so that another quantizer can be
    /// calibrated on exactly the same data.
    #[arg(long)]
    pub save_calib: Option<PathBuf>,
    /// Print each quantized node's SQNR against the float model, worst first.
    #[arg(long)]
    pub report: bool,
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    if args.calib_windows == 0 {
        bail!("--calib-windows must be at least 1");
    }
    if same_file(&args.model, &args.out) {
        bail!("--out is the input model; write the quantized model to another file");
    }
    let bytes =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let proto = quantize::read_model(&bytes)
        .with_context(|| format!("reading {}", args.model.display()))?;
    let spec_json = proto
        .metadata_props
        .iter()
        .find(|p| p.key == quantize::METADATA_KEY)
        .map(|p| p.value.clone())
        .with_context(|| {
            format!(
                "{}: {}",
                args.model.display(),
                quantize::QuantizeError::NoMetadata
            )
        })?;
    let spec = ModelSpec::from_json(&spec_json)
        .with_context(|| format!("{}: the prism metadata", args.model.display()))?;
    let feeds = calibration::feeds(&spec);
    let mut data = calibration::source(
        &args.calib,
        &args.calib_split,
        &spec,
        &feeds,
        args.calib_windows,
    )?;
    if data.is_empty() {
        bail!(
            "{}: {}",
            args.calib.display(),
            quantize::QuantizeError::NoCalibrationData
        );
    }

    if let Some(dir) = &args.save_calib {
        save_calibration(data.as_mut(), &feeds.input_shape, dir)?;
    }

    let options = QuantizeOptions {
        method: match args.method {
            MethodArg::Minmax => Method::MinMax,
            MethodArg::Percentile => Method::Percentile(args.percentile),
            MethodArg::Entropy => Method::Entropy,
        },
        per_channel: !args.per_tensor,
        activations: match args.activations {
            ActivationsArg::Int8 => ActivationType::Int8,
            ActivationsArg::Uint8 => ActivationType::Uint8,
        },
        reduce_range: args.reduce_range,
        exclude: args.exclude.clone(),
        include: args.include.clone(),
        sqnr_report: args.report,
    };
    let total = data.len() as u64 * if args.report { 2 } else { 1 };
    let mut meter = Meter::new("quantize", total);
    let first_pass = data.len();
    let started = std::time::Instant::now();
    let result = quantize::quantize(
        &proto,
        &feeds,
        data.as_mut(),
        &options,
        &mut |pass, done, of| {
            let (offset, what) = match pass {
                Pass::Calibrate => (0, "calibrating"),
                Pass::Report => (first_pass, "measuring SQNR"),
            };
            meter.set((offset + done) as u64, || {
                format!("{what}: {done} of {of} windows")
            });
        },
    );
    meter.finish();
    let quantized = result.with_context(|| format!("quantizing {}", args.model.display()))?;
    let size = quantized.save(&args.out)?;
    eprintln!(
        "wrote {} ({:.1} MB, was {:.1} MB) in {:.1} s",
        args.out.display(),
        size as f64 / 1e6,
        bytes.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    if matches!(args.activations, ActivationsArg::Int8) {
        eprintln!("{S8S8_HINT}");
    }
    outln!("{}", quantized.report.table().trim_end())?;
    Ok(())
}

/// Printed after an S8S8 file is written: the default suits TensorRT, but ONNX Runtime's x86
/// CPU kernels fuse few S8S8 convolutions and run the rest as dequantize + float, slower than
/// fp32 (measured on CPUs with and without VNNI; README, INT8 section).
const S8S8_HINT: &str = "note: int8 activations (S8S8) are what TensorRT needs; for ONNX Runtime \
on x86 CPUs, --activations uint8 runs faster (its x86 int8 kernels fuse few S8S8 convolutions)";

/// Writes every calibration window and where sequences start as `.npy` files in `dir`.
fn save_calibration(data: &mut dyn CalibrationData, shape: &[usize], dir: &Path) -> Result<()> {
    let mut values = Vec::new();
    let mut starts = Vec::new();
    for (i, window) in data.windows().enumerate() {
        let window = window.map_err(|e| anyhow::anyhow!("calibration window {i}: {e}"))?;
        values.extend_from_slice(&window.input);
        starts.push(u8::from(window.new_sequence));
    }
    let mut dims = vec![starts.len()];
    dims.extend_from_slice(&shape[1..]);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let n = starts.len();
    prism_export::npy::write(
        &dir.join("windows.npy"),
        &burn::tensor::TensorData::new(values, dims),
    )?;
    prism_export::npy::write(
        &dir.join("starts.npy"),
        &burn::tensor::TensorData::new(starts, [n]),
    )?;
    eprintln!("saved {n} calibration windows in {}", dir.display());
    Ok(())
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
