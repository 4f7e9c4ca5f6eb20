//! YOLOX output decoding (eval mode of the reference head), kept apart from the network.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};

/// Anchor-point grid of the decode step: for each anchor `(x, y, stride)`, level by level
/// (strides 8, 16, 32) and row-major inside a level.
pub fn anchor_grid(input_hw: [usize; 2], strides: &[usize]) -> Vec<[f32; 3]> {
    let mut out = Vec::new();
    for &s in strides {
        let (h, w) = (input_hw[0] / s, input_hw[1] / s);
        for y in 0..h {
            for x in 0..w {
                out.push([x as f32, y as f32, s as f32]);
            }
        }
    }
    out
}

/// Decodes raw head output `[N, A, 5 + K]` into `[N, A, 5 + K]` =
/// (cx, cy, w, h in input pixels, sigmoid(obj), sigmoid(cls)...):
/// `xy = (xy + grid) * stride`, `wh = exp(wh) * stride`.
///
/// Only tensor ops (the grid is a constant), so it can be exported as part of a graph.
pub fn decode_outputs(raw: Tensor<3>, input_hw: [usize; 2], strides: &[usize]) -> Tensor<3> {
    let device: Device = raw.device();
    let [_, a, c] = raw.dims();
    let grid = anchor_grid(input_hw, strides);
    assert_eq!(
        grid.len(),
        a,
        "raw output has {a} anchors, the grid of {input_hw:?} has {}",
        grid.len()
    );
    let xy: Vec<f32> = grid.iter().flat_map(|g| [g[0], g[1]]).collect();
    let st: Vec<f32> = grid.iter().map(|g| g[2]).collect();
    let xy = Tensor::<2>::from_data(TensorData::new(xy, [a, 2]), &device).unsqueeze::<3>();
    let st = Tensor::<2>::from_data(TensorData::new(st, [a, 1]), &device).unsqueeze::<3>();
    let box_xy = (raw.clone().narrow(2, 0, 2) + xy) * st.clone();
    let box_wh = raw.clone().narrow(2, 2, 2).exp() * st;
    let scores = sigmoid(raw.narrow(2, 4, c - 4));
    Tensor::cat(vec![box_xy, box_wh, scores], 2)
}

/// Decoding as a value: precomputed for one input size.
#[derive(Debug, Clone)]
pub struct YoloxDecoder {
    /// Padded input size `[H, W]`.
    pub input_hw: [usize; 2],
    /// Level strides.
    pub strides: Vec<usize>,
}

impl YoloxDecoder {
    /// Decoder for RVT's strides 8, 16, 32.
    pub fn new(input_hw: [usize; 2]) -> Self {
        Self {
            input_hw,
            strides: vec![8, 16, 32],
        }
    }

    /// See [`decode_outputs`].
    pub fn forward(&self, raw: Tensor<3>) -> Tensor<3> {
        decode_outputs(raw, self.input_hw, &self.strides)
    }
}
