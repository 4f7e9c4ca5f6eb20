//! The Burn tensor decode of the YOLOX head equals prism-core's host decode, on random rows:
//! training, export and deployment read the same boxes out of the same rows.

use burn::tensor::{Device, Tensor, TensorData};
use prism_core::yolox::{anchor_grid, decode_rows};
use prism_models::rvt::{decode_boxes, decode_outputs};

#[test]
fn tensor_decode_equals_host_decode_on_random_rows() {
    let (input_hw, strides, classes) = ([64, 96], [8, 16, 32], 3);
    let grid = anchor_grid(input_hw, &strides);
    let (a, row) = (grid.len(), 5 + classes);
    // A fixed pseudo-random pattern in [-3, 3): offsets, log sizes and logits of every sign.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let raw: Vec<f32> = (0..2 * a * row)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 3.0
        })
        .collect();
    let device = Device::flex();
    let tensor = || Tensor::<3>::from_data(TensorData::new(raw.clone(), [2, a, row]), &device);
    let got: Vec<f32> = decode_outputs(tensor(), &grid)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let boxes: Vec<f32> = decode_boxes(tensor(), &grid)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let mut want = raw.clone();
    for image in want.chunks_exact_mut(a * row) {
        decode_rows(image, row, &strides, input_hw).unwrap();
    }
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "value {i}: tensor {g}, host {w}"
        );
    }
    // The loss's boxes are the decode's.
    for (r, (b, g)) in boxes.chunks_exact(4).zip(got.chunks_exact(row)).enumerate() {
        assert_eq!(b, &g[..4], "row {r}");
    }
}
