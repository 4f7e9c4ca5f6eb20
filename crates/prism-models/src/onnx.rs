//! Exporting a model of the zoo to ONNX with everything deployment needs: the histogram and the
//! eight LSTM states in, raw detections and the eight new states out, and the model spec
//! (classes, representation, strides, state names and shapes) in the `prism` metadata entry.

use burn::tensor::{Device, Tensor};
use prism_export::{ExportOptions, OnnxModel};

use crate::rvt::{Rvt, RvtState};
use crate::zoo::ModelCard;

/// How to export an RVT model.
#[derive(Debug, Clone)]
pub struct RvtExport {
    pub opset: i64,
    pub dynamic_batch: bool,
}

impl Default for RvtExport {
    fn default() -> Self {
        Self {
            opset: prism_export::DEFAULT_OPSET,
            dynamic_batch: false,
        }
    }
}

/// Graph input names: `histogram`, then the eight states (`h1, c1, …, h4, c4`; an SSM's
/// `s1_re, s1_im, …`), then `window_duration_s` for an SSM.
pub fn input_names(card: &ModelCard) -> Vec<String> {
    std::iter::once("histogram".to_string())
        .chain(card.state_names().into_iter().map(|(input, _)| input))
        .chain(card.duration_input().map(str::to_string))
        .collect()
}

/// Graph output names: `detections`, then each state's name with `_out`.
pub fn output_names(card: &ModelCard) -> Vec<String> {
    std::iter::once("detections".to_string())
        .chain(card.state_names().into_iter().map(|(_, output)| output))
        .collect()
}

/// Sample inputs of batch 1 (histogram and zero states) on `device`.
pub fn sample_inputs(card: &ModelCard, device: &Device) -> (Tensor<4>, Vec<Tensor<4>>) {
    let [h, w] = card.model.input_size;
    let histogram = Tensor::zeros([1, 2 * card.data.bins, h, w], device);
    let state = RvtState::zeros(&card.rvt_config(), 1, [h, w], device).into_flat();
    (histogram, state)
}

/// One streaming step as a function of flat tensors, the form the exporter captures.
pub fn step(
    model: &Rvt,
    (histogram, state): (Tensor<4>, Vec<Tensor<4>>),
) -> (Tensor<3>, Vec<Tensor<4>>) {
    let (raw, next) = model.forward(histogram, flat_state(state));
    (raw, next.into_flat())
}

/// [`step`] for a model that takes the window duration `dt_s: [N, 1]` (SSM memory).
pub fn timed_step(
    model: &Rvt,
    (histogram, state, dt_s): (Tensor<4>, Vec<Tensor<4>>, Tensor<2>),
) -> (Tensor<3>, Vec<Tensor<4>>) {
    let (raw, next) = model.forward_timed(histogram, flat_state(state), dt_s);
    (raw, next.into_flat())
}

fn flat_state(state: Vec<Tensor<4>>) -> RvtState {
    match RvtState::from_flat(state) {
        Some(state) => state,
        None => unreachable_state(),
    }
}

#[cold]
fn unreachable_state() -> ! {
    // `sample_inputs` always builds 8 state tensors; only a programming error gets here.
    unreachable!("RVT state must be 8 tensors")
}

/// Exports `model` (described by `card`) to ONNX.
pub fn export_rvt(
    model: &Rvt,
    card: &ModelCard,
    settings: &RvtExport,
    device: &Device,
) -> prism_export::Result<OnnxModel> {
    let batch = if settings.dynamic_batch {
        None
    } else {
        Some(1)
    };
    let options = ExportOptions::default()
        .opset(settings.opset)
        .dynamic_batch(settings.dynamic_batch)
        .inputs(input_names(card))
        .outputs(output_names(card))
        .metadata(card.model_spec(batch).to_json())
        .graph_name(card.name.clone())
        // The 20-channel histogram stem, split for ONNX Runtime's blocked kernels and tract.
        .split_input_conv(true);
    let (histogram, state) = sample_inputs(card, device);
    if card.duration_input().is_some() {
        let dt_s = Tensor::full([1, 1], f64::from(card.data.window_ms) / 1000.0, device);
        prism_export::export(model, (histogram, state, dt_s), timed_step, &options)
    } else {
        prism_export::export(model, (histogram, state), step, &options)
    }
}

/// The model spec of an RGB + thermal + event detector at input size `[h, w]` (multiples of
/// 32): a stateless frame detector, `image [1, 5, H, W]` (RGB, thermal, event in [0, 1]) in,
/// raw YOLOX outputs `detections [1, A, 5 + K]` out.
pub fn mm_model_spec(
    name: &str,
    classes: &[String],
    [h, w]: [usize; 2],
    batch: Option<usize>,
) -> prism_core::spec::ModelSpec {
    use prism_core::spec::{ModelSpec, OutputSpec, Postprocess, Task, TensorSpec, SPEC_VERSION};
    ModelSpec {
        spec_version: SPEC_VERSION,
        model: name.to_string(),
        task: Task::FrameDetection,
        classes: classes.to_vec(),
        input: TensorSpec {
            name: "image".into(),
            shape: vec![batch, Some(crate::mm::MM_CHANNELS), Some(h), Some(w)],
        },
        representation: None,
        output: OutputSpec {
            name: "detections".into(),
            strides: vec![8, 16, 32],
            decoded: false,
        },
        state: Vec::new(),
        duration_input: None,
        postprocess: Some(Postprocess::default()),
        sequence: None,
        precision: Default::default(),
        quantization: None,
    }
}

/// Exports an RGB + thermal + event detector for input size `[h, w]` with its model spec.
pub fn export_mm(
    model: &crate::mm::MmDetector,
    name: &str,
    classes: &[String],
    [h, w]: [usize; 2],
    dynamic_batch: bool,
    device: &Device,
) -> prism_export::Result<OnnxModel> {
    let batch = if dynamic_batch { None } else { Some(1) };
    let options = ExportOptions::default()
        .dynamic_batch(dynamic_batch)
        .inputs(["image"])
        .outputs(["detections"])
        .metadata(mm_model_spec(name, classes, [h, w], batch).to_json())
        .graph_name(name.to_string());
    // Traced from batches 2 and 3 up for a dynamic axis, as `export_seq` is: at batch 1 Burn skips
    // layout operations on the unit axis, so a batch-1 trace would not line up with a batch-2 one.
    let sample_batch = if dynamic_batch { 2 } else { 1 };
    let sample = Tensor::<4>::zeros([sample_batch, crate::mm::MM_CHANNELS, h, w], device);
    prism_export::export(
        model,
        sample,
        |m: &crate::mm::MmDetector, x| m.forward(x),
        &options,
    )
}

/// Exports a MiT backbone for input size `[h, w]`: `image [1, C, H, W]` in, the four stage maps
/// `s1` … `s4` out (no model spec: a backbone is not a detector).
pub fn export_mit(
    mit: &crate::mit::Mit,
    [h, w]: [usize; 2],
    device: &Device,
) -> prism_export::Result<OnnxModel> {
    let options = ExportOptions::default()
        .inputs(["image"])
        .outputs(["s1", "s2", "s3", "s4"]);
    let sample = Tensor::<4>::zeros([1, mit.in_channels(), h, w], device);
    let stages = |m: &crate::mit::Mit, x| -> Vec<Tensor<4>> { m.forward(x).into() };
    prism_export::export(mit, sample, stages, &options)
}

/// Sample input of a next-vector model: `batch` contexts `[batch, C, D]`.
pub fn seq_sample_input(card: &crate::seq::SeqCard, batch: usize, device: &Device) -> Tensor<3> {
    Tensor::zeros([batch, card.model.context, card.model.dim], device)
}

/// Exports a next-vector sequence model: `context [N, C, D]` in, `next [N, D]` out (unit
/// vectors), its card as a `next-vector` spec in the metadata. `dynamic_batch` leaves N free,
/// for servers that batch requests.
pub fn export_seq(
    model: &crate::seq::SeqModel,
    card: &crate::seq::SeqCard,
    opset: i64,
    dynamic_batch: bool,
    device: &Device,
) -> prism_export::Result<OnnxModel> {
    use crate::seq::card::{INPUT_NAME, OUTPUT_NAME};
    let batch = if dynamic_batch { None } else { Some(1) };
    let options = ExportOptions::default()
        .opset(opset)
        .dynamic_batch(dynamic_batch)
        .inputs([INPUT_NAME])
        .outputs([OUTPUT_NAME])
        .metadata(card.spec(batch).to_json())
        .graph_name(card.name.clone());
    // A dynamic batch is traced from batches 2 and 3 up: at batch 1 Burn skips some layout
    // operations (a swap of a unit axis is free), so the two traces would not line up.
    let sample_batch = if dynamic_batch { 2 } else { 1 };
    prism_export::export(
        model,
        seq_sample_input(card, sample_batch, device),
        |m: &crate::seq::SeqModel, x| m.forward(x),
        &options,
    )
}
