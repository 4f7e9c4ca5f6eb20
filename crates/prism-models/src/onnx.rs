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

/// Graph input names: `histogram`, then `h1, c1, …, h4, c4`.
pub fn input_names() -> Vec<String> {
    std::iter::once("histogram".to_string())
        .chain(ModelCard::state_names().into_iter().map(|(input, _)| input))
        .collect()
}

/// Graph output names: `detections`, then `h1_out, c1_out, …, h4_out, c4_out`.
pub fn output_names() -> Vec<String> {
    std::iter::once("detections".to_string())
        .chain(
            ModelCard::state_names()
                .into_iter()
                .map(|(_, output)| output),
        )
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
    let state = match RvtState::from_flat(state) {
        Some(state) => state,
        None => unreachable_state(),
    };
    let (raw, next) = model.forward(histogram, state);
    (raw, next.into_flat())
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
        .inputs(input_names())
        .outputs(output_names())
        .metadata(card.model_spec(batch).to_json())
        .graph_name(card.name.clone())
        // The 20-channel histogram stem, split for ONNX Runtime's blocked kernels and tract.
        .split_input_conv(true);
    prism_export::export(model, sample_inputs(card, device), step, &options)
}
