//! Evaluation as RVT does it: stream every sequence from its start with carried state, predict
//! at the labelled windows, then score with the Prophesee protocol (COCO mAP after dropping the
//! first 0.5 s and small boxes).
//!
//! The detector is behind [`SequenceRunner`], so the same code scores a Burn model in training
//! and an exported ONNX model in tract or ONNX Runtime.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use prism_core::detection::{postprocess, Detection};
use prism_core::yolox::{decode_rows, num_anchors};
use prism_data::{PreparedSequence, PreparedSplit};
use prism_eval::coco::CocoMetrics;
use prism_eval::prophesee::{BoxFilter, PropheseeConfig, Sequence, TimedBox};
use prism_models::rvt::{Rvt, RvtConfig, RvtState};

/// What a [`SequenceRunner`] fails with: its backend's own error, kept as the cause.
pub type RunnerError = Box<dyn std::error::Error + Send + Sync>;

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The detector (Burn model or exported file) failed.
    #[error("running the detector: {0}")]
    Runner(RunnerError),
    #[error("the detector was stepped before it was reset")]
    NotReset,
    #[error(transparent)]
    Decode(#[from] prism_core::yolox::DecodeError),
    #[error(transparent)]
    Protocol(#[from] prism_eval::prophesee::PropheseeError),
}

/// A recurrent detector driven one window at a time.
pub trait SequenceRunner {
    /// Starts `batch` new sequences (zero state).
    fn reset(&mut self, batch: usize) -> Result<(), RunnerError>;
    /// One window for each of the `batch` sequences: `input` is `[batch, C, H, W]` counts and
    /// `durations_s` each sequence's time since its previous window (seconds; what a memory
    /// discretized by time needs, others ignore it); returns the raw head output
    /// `[batch, A, 5 + K]`.
    fn step(
        &mut self,
        input: &[f32],
        batch: usize,
        durations_s: &[f32],
    ) -> Result<Vec<f32>, RunnerError>;
    /// Strides of the head's levels, which fix its anchor grid.
    fn strides(&self) -> Vec<usize>;
}

/// [`SequenceRunner`] for a Burn model (in inference mode, without autodiff).
#[derive(Debug)]
pub struct BurnRunner {
    model: Rvt,
    config: RvtConfig,
    device: Device,
    input_shape: [usize; 3],
    state: Option<RvtState>,
}

impl BurnRunner {
    /// Wraps `model` (on flex; it is switched to inference mode) for inputs `[C, H, W]`.
    pub fn new(model: &Rvt, config: RvtConfig, input_shape: [usize; 3]) -> Self {
        Self::on(model, config, input_shape, Device::flex())
    }

    /// [`Self::new`] for a model on `device` (the inference device, without autodiff).
    pub fn on(model: &Rvt, config: RvtConfig, input_shape: [usize; 3], device: Device) -> Self {
        let model = model.valid();
        Self {
            model,
            config,
            device,
            input_shape,
            state: None,
        }
    }
}

impl SequenceRunner for BurnRunner {
    fn strides(&self) -> Vec<usize> {
        self.config.strides().to_vec()
    }

    fn reset(&mut self, batch: usize) -> Result<(), RunnerError> {
        let [_, h, w] = self.input_shape;
        self.state = Some(RvtState::zeros(&self.config, batch, [h, w], &self.device));
        Ok(())
    }

    fn step(
        &mut self,
        input: &[f32],
        batch: usize,
        durations_s: &[f32],
    ) -> Result<Vec<f32>, RunnerError> {
        let [c, h, w] = self.input_shape;
        let state = self.state.take().ok_or(EvalError::NotReset)?;
        let x = Tensor::<4>::from_data(
            TensorData::new(input.to_vec(), [batch, c, h, w]),
            &self.device,
        );
        let dt_s = Tensor::<2>::from_data(
            TensorData::new(durations_s.to_vec(), [batch, 1]),
            &self.device,
        );
        let (raw, state) = self.model.forward_timed(x, state, dt_s);
        self.state = Some(state);
        raw.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("reading the head output: {e:?}").into())
    }
}

/// Post-processing of the evaluation (RVT evaluates with confidence 0.001, NMS IoU 0.45).
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub score_threshold: f32,
    pub nms_iou: f32,
    pub max_detections: usize,
    /// Sequences run side by side as one batch.
    pub lockstep: usize,
    /// The runner's outputs are already decoded (boxes in pixels, sigmoid scores).
    pub outputs_decoded: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.001,
            nms_iou: 0.45,
            max_detections: 300,
            lockstep: 8,
            outputs_decoded: false,
        }
    }
}

/// Ground truth and detections of one sequence, in sensor pixels, at the label timestamps.
#[derive(Debug, Clone, Default)]
pub struct SequencePredictions {
    pub name: String,
    pub gt: Vec<TimedBox>,
    pub dt: Vec<TimedBox>,
}

/// Scale from network input pixels to sensor pixels.
fn sensor_scale(seq: &PreparedSequence) -> f32 {
    if seq.meta.downsample {
        2.0
    } else {
        1.0
    }
}

fn ground_truth(seq: &PreparedSequence) -> Vec<TimedBox> {
    let s = sensor_scale(seq);
    seq.labels
        .iter()
        .flat_map(|wl| {
            wl.boxes.iter().map(move |b| TimedBox {
                t_us: wl.t_us,
                x: b.x * s,
                y: b.y * s,
                w: b.w * s,
                h: b.h * s,
                class_id: b.class_id,
                score: 1.0,
            })
        })
        .collect()
}

/// Runs `runner` over every sequence of `split` and collects the detections at labelled windows.
pub fn predict_split(
    runner: &mut dyn SequenceRunner,
    split: &PreparedSplit,
    opts: &EvalOptions,
) -> Result<Vec<SequencePredictions>, EvalError> {
    predict_split_with_progress(runner, split, opts, &mut |_| {})
}

/// [`predict_split`], calling `on_windows(n)` after each step with the windows it ran (their
/// sum over the run is the split's window count).
pub fn predict_split_with_progress(
    runner: &mut dyn SequenceRunner,
    split: &PreparedSplit,
    opts: &EvalOptions,
    on_windows: &mut dyn FnMut(usize),
) -> Result<Vec<SequencePredictions>, EvalError> {
    let mut out = Vec::with_capacity(split.sequences.len());
    for group in split.sequences.chunks(opts.lockstep.max(1)) {
        out.extend(predict_group(runner, group, opts, on_windows)?);
    }
    Ok(out)
}

fn predict_group(
    runner: &mut dyn SequenceRunner,
    group: &[PreparedSequence],
    opts: &EvalOptions,
    on_windows: &mut dyn FnMut(usize),
) -> Result<Vec<SequencePredictions>, EvalError> {
    let batch = group.len();
    let meta = &group[0].meta;
    let [h, w] = meta.input_hw;
    let c = meta.channels;
    let plane = c * h * w;
    let longest = group.iter().map(|s| s.num_windows()).max().unwrap_or(0);
    let mut results: Vec<SequencePredictions> = group
        .iter()
        .map(|s| SequencePredictions {
            name: s.meta.name.clone(),
            gt: ground_truth(s),
            dt: Vec::new(),
        })
        .collect();
    runner.reset(batch).map_err(EvalError::Runner)?;
    let strides = runner.strides();
    let mut input = vec![0.0f32; batch * plane];
    let mut durations_s = vec![meta.window_us as f32 / 1e6; batch];
    let (mut scratch, mut kept) = (Vec::new(), Vec::<Detection>::new());
    for t in 0..longest {
        for (b, seq) in group.iter().enumerate() {
            let dst = &mut input[b * plane..(b + 1) * plane];
            if t < seq.num_windows() {
                for (d, &v) in dst.iter_mut().zip(seq.window(t).iter()) {
                    *d = v as f32;
                }
                durations_s[b] = seq.window_duration_s(t);
            } else {
                dst.fill(0.0);
            }
        }
        let mut raw = runner
            .step(&input, batch, &durations_s)
            .map_err(EvalError::Runner)?;
        on_windows(group.iter().filter(|seq| t < seq.num_windows()).count());
        let per_image = raw.len() / batch.max(1);
        let row = per_image / num_anchors([h, w], &strides).max(1);
        for (b, seq) in group.iter().enumerate() {
            let Some(labels) = (t < seq.num_windows()).then(|| seq.labels_at(t)).flatten() else {
                continue;
            };
            let image = &mut raw[b * per_image..(b + 1) * per_image];
            if !opts.outputs_decoded {
                decode_rows(image, row, &strides, [h, w])?;
            }
            postprocess(
                image,
                row,
                opts.score_threshold,
                opts.nms_iou,
                opts.max_detections,
                &mut scratch,
                &mut kept,
            );
            let s = sensor_scale(seq);
            let (sw, sh) = (seq.meta.sensor[0] as f32, seq.meta.sensor[1] as f32);
            for d in &kept {
                let bx = d.bbox.scaled_and_clipped(s, sw, sh);
                if bx.width() <= 0.0 || bx.height() <= 0.0 {
                    continue;
                }
                results[b].dt.push(TimedBox {
                    t_us: labels.t_us,
                    x: bx.x1,
                    y: bx.y1,
                    w: bx.width(),
                    h: bx.height(),
                    class_id: d.class_id as u32,
                    score: d.score,
                });
            }
        }
    }
    Ok(results)
}

/// The evaluation label filter by name: `gen1`, `gen4` (1Mpx), `synthetic` (RVT's 0.5 s skip,
/// no size limits: synthetic boxes are clean) or `none` (every label).
pub fn filter_by_name(name: &str) -> Option<BoxFilter> {
    match name {
        "gen1" => Some(BoxFilter::gen1()),
        "gen4" | "1mpx" => Some(BoxFilter::gen4()),
        "synthetic" => Some(BoxFilter {
            min_diag: 0.0,
            min_side: 0.0,
            ..BoxFilter::gen1()
        }),
        "none" => Some(BoxFilter::none()),
        _ => None,
    }
}

/// The protocol's filter for data of this sensor size: Gen1 (304x240), 1Mpx (1280x720), else
/// the synthetic one.
pub fn filter_for_sensor(sensor: [u32; 2]) -> &'static str {
    match sensor {
        [304, 240] => "gen1",
        [1280, 720] => "gen4",
        _ => "synthetic",
    }
}

/// Label-time tolerance of the protocol: RVT's 50 ms, or just under half the label spacing when
/// label frames are 50 ms apart or closer (prism's synthetic scenes label every 50 ms window;
/// with ±50 ms each detection would also count for the neighbouring frames). RVT's own label
/// frames are about 100 ms apart or more, so they get RVT's tolerance.
pub fn time_tolerance_us(preds: &[SequencePredictions]) -> i64 {
    const RVT_TOLERANCE_US: i64 = 50_000;
    let spacing = preds
        .iter()
        .flat_map(|p| {
            let mut times: Vec<i64> = p.gt.iter().map(|b| b.t_us).collect();
            times.dedup();
            times.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        })
        .filter(|&d| d > 0)
        .min();
    match spacing {
        Some(d) if d <= RVT_TOLERANCE_US => (d / 2 - 1).max(0),
        _ => RVT_TOLERANCE_US,
    }
}

/// COCO metrics of predicted sequences with the Prophesee protocol.
pub fn score(
    preds: &[SequencePredictions],
    classes: &[String],
    sensor: [u32; 2],
    filter: &BoxFilter,
) -> Result<CocoMetrics, EvalError> {
    let config = PropheseeConfig {
        filter: *filter,
        time_tol_us: time_tolerance_us(preds),
        width: sensor[0],
        height: sensor[1],
        classes: classes.to_vec(),
    };
    let sequences: Vec<Sequence<'_>> = preds
        .iter()
        .map(|p| Sequence {
            gt: &p.gt,
            dt: &p.dt,
        })
        .collect();
    Ok(prism_eval::prophesee::evaluate(&sequences, &config)?)
}
