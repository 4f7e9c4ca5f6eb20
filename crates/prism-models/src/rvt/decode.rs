//! YOLOX output decoding on Burn tensors (eval mode of the reference head), kept apart from the
//! network. The anchor grid is prism-core's ([`prism_core::yolox`]), the one the loss and the
//! host-side decode use.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use prism_core::yolox::Anchor;

/// The box part of raw head outputs `[N, A, 5 + K]` as `(cx, cy, w, h)` pixels `[N, A, 4]`:
/// `(xy + cell) * stride`, `exp(wh) * stride`. Only tensor ops (differentiable; the grid is a
/// constant), so the loss trains through it and a graph can contain it.
pub fn decode_boxes(raw: Tensor<3>, anchors: &[Anchor]) -> Tensor<3> {
    let device: Device = raw.device();
    let a = anchors.len();
    let cells: Vec<f32> = anchors.iter().flat_map(|g| [g.x, g.y]).collect();
    let strides: Vec<f32> = anchors.iter().map(|g| g.stride).collect();
    let cells = Tensor::<2>::from_data(TensorData::new(cells, [a, 2]), &device).unsqueeze::<3>();
    let strides =
        Tensor::<2>::from_data(TensorData::new(strides, [a, 1]), &device).unsqueeze::<3>();
    let xy = (raw.clone().narrow(2, 0, 2) + cells) * strides.clone();
    let wh = raw.narrow(2, 2, 2).exp() * strides;
    Tensor::cat(vec![xy, wh], 2)
}

/// Decodes raw head output `[N, A, 5 + K]` into `[N, A, 5 + K]` = (cx, cy, w, h in input pixels,
/// sigmoid(obj), sigmoid(cls)...), the tensor form of [`prism_core::yolox::decode_rows`].
///
/// Panics when the output's anchor count is not the grid's: the model and its grid disagree.
pub fn decode_outputs(raw: Tensor<3>, anchors: &[Anchor]) -> Tensor<3> {
    let [_, a, c] = raw.dims();
    assert_eq!(
        anchors.len(),
        a,
        "raw output has {a} anchors, the grid has {}",
        anchors.len()
    );
    let boxes = decode_boxes(raw.clone(), anchors);
    let scores = sigmoid(raw.narrow(2, 4, c - 4));
    Tensor::cat(vec![boxes, scores], 2)
}
