//! The SSM memory (`model.memory = "ssm"`): its discretization follows the duration it is given
//! (exactly: two half windows equal one whole window), and the state it carries reaches the
//! detections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use prism_models::rvt::ssm::{SsmCell, SsmCellConfig};
use prism_models::rvt::RvtState;
use prism_models::zoo::ModelCard;

fn random(dims: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    let mut s = seed;
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, dims), device)
}

fn dt(seconds: f32, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(vec![seconds], [1, 1]), device)
}

fn max_abs_diff(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
    (a.clone() - b.clone()).abs().max().into_scalar()
}

/// A cell with rotating modes, so the imaginary part of the discretization is exercised too.
fn cell(device: &Device) -> SsmCell {
    let mut cell = SsmCellConfig::new(8).init(device);
    let frequency: Vec<f32> = (0..8).map(|k| 4.0 * k as f32).collect();
    cell.frequency = Param::from_tensor(Tensor::from_data(TensorData::new(frequency, [8]), device));
    cell
}

#[test]
fn the_pole_is_exp_of_a_times_the_given_duration() {
    let device = Device::flex();
    let cell = cell(&device);
    let decay: Vec<f32> = cell
        .log_decay
        .val()
        .exp()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let frequency: Vec<f32> = cell
        .frequency
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    // Initial time constants span 10 ms .. 2 s.
    assert!((1.0 / decay[0] - 0.01).abs() < 1e-5, "{}", 1.0 / decay[0]);
    assert!((1.0 / decay[7] - 2.0).abs() < 1e-3, "{}", 1.0 / decay[7]);
    for seconds in [0.02f32, 0.05, 0.1] {
        let (re, im) = cell.discrete_pole(dt(seconds, &device));
        let re: Vec<f32> = re.into_data().try_to_vec::<f32>().unwrap();
        let im: Vec<f32> = im.into_data().try_to_vec::<f32>().unwrap();
        for k in 0..8 {
            let magnitude = (-decay[k] * seconds).exp();
            let phase = frequency[k] * seconds;
            assert!((re[k] - magnitude * phase.cos()).abs() < 1e-6);
            assert!((im[k] - magnitude * phase.sin()).abs() < 1e-6);
        }
    }
}

#[test]
fn two_half_windows_leave_the_state_one_whole_window_leaves() {
    let device = Device::flex();
    let cell = cell(&device);
    let x = random([1, 8, 3, 4], 1, &device);
    let (re0, im0) = (
        random([1, 8, 3, 4], 2, &device),
        random([1, 8, 3, 4], 3, &device),
    );
    let (_, re_whole, im_whole) =
        cell.forward(x.clone(), re0.clone(), im0.clone(), dt(0.05, &device));
    let (_, re_half, im_half) =
        cell.forward(x.clone(), re0.clone(), im0.clone(), dt(0.025, &device));
    let (_, re_two, im_two) = cell.forward(x, re_half.clone(), im_half, dt(0.025, &device));
    assert!(max_abs_diff(&re_whole, &re_two) < 1e-5);
    assert!(max_abs_diff(&im_whole, &im_two) < 1e-5);
    // And the duration matters: half a window is not a whole one.
    assert!(max_abs_diff(&re_whole, &re_half) > 1e-2);
}

#[test]
fn a_zero_or_negative_length_window_keeps_the_state() {
    let device = Device::flex();
    let cell = cell(&device);
    let x = random([2, 8, 2, 2], 4, &device);
    let (re0, im0) = (
        random([2, 8, 2, 2], 5, &device),
        random([2, 8, 2, 2], 6, &device),
    );
    let zero = Tensor::<2>::zeros([2, 1], &device);
    let (_, re, im) = cell.forward(x.clone(), re0.clone(), im0.clone(), zero);
    assert!(max_abs_diff(&re, &re0) < 1e-6);
    assert!(max_abs_diff(&im, &im0) < 1e-6);
    // Time running backwards counts as no time, rather than growing the state by exp(|A| dt).
    let backwards = Tensor::<2>::full([2, 1], -1.0, &device);
    let (_, re, im) = cell.forward(x, re0.clone(), im0.clone(), backwards);
    assert!(max_abs_diff(&re, &re0) < 1e-6);
    assert!(max_abs_diff(&im, &im0) < 1e-6);
}

fn ssm_card() -> ModelCard {
    ModelCard::builtin("rvt-tiny-synth")
        .unwrap()
        .with_overrides(&["model.memory=ssm".into()])
        .unwrap()
}

fn histogram(card: &ModelCard, seed: u64, device: &Device) -> Tensor<4> {
    let [h, w] = card.model.input_size;
    random([1, 2 * card.data.bins, h, w], seed, device).abs() * 4.0
}

#[test]
fn the_carried_state_reaches_the_detections() {
    let device = Device::flex();
    let card = ssm_card();
    let model = card.rvt_config().init(&device);
    let zeros = || RvtState::zeros(&card.rvt_config(), 1, card.model.input_size, &device);
    let mut state = zeros();
    for i in 0..3 {
        let (_, next) = model.forward_timed(histogram(&card, i, &device), state, dt(0.05, &device));
        state = next;
    }
    let x = histogram(&card, 9, &device);
    let (carried, _) = model.forward_timed(x.clone(), state.clone(), dt(0.05, &device));
    let (fresh, _) = model.forward_timed(x.clone(), zeros(), dt(0.05, &device));
    // Without a path from the state the two would be the same computation, bit for bit.
    let scale: f32 = carried.clone().abs().max().into_scalar();
    let changed: f32 = (carried.clone() - fresh).abs().max().into_scalar();
    println!("largest output {scale}, changed by zeroing the state {changed}");
    assert!(
        changed > 1e-5 * scale,
        "zeroing the state changed the detections by {changed}"
    );
    // The duration reaches them too, and `forward` assumes the card's 50 ms.
    let (longer, _) = model.forward_timed(x.clone(), state.clone(), dt(0.1, &device));
    let changed: f32 = (carried.clone() - longer).abs().max().into_scalar();
    println!("changed by a 100 ms window {changed}");
    assert!(
        changed > 1e-5 * scale,
        "a 100 ms window changed the detections by {changed}"
    );
    let (default, _) = model.forward(x, state);
    assert_eq!(default.into_data(), carried.into_data());
}

#[test]
fn ssm_memory_is_smaller_than_the_lstm_and_refuses_rvt_checkpoints() {
    let device = Device::flex();
    let lstm = ModelCard::builtin("rvt-tiny-synth").unwrap();
    let ssm = ssm_card();
    let lstm_params = lstm.rvt_config().init(&device).param_breakdown();
    let ssm_params = ssm.rvt_config().init(&device).param_breakdown();
    // Per stage of C channels: LSTM 1x1 conv 2C -> 4C (8C² + 4C); SSM B (2C² + 2C), Cout
    // (2C² + C), G (C² + C) and three vectors of C.
    let expected_ssm: usize = [32usize, 64, 128, 256]
        .iter()
        .map(|c| 5 * c * c + 7 * c)
        .sum();
    assert_eq!(ssm_params.memory, expected_ssm);
    assert_eq!(
        lstm_params.total - lstm_params.memory,
        ssm_params.total - ssm_params.memory
    );
    let err =
        prism_models::rvt::import_rvt_checkpoint("/nonexistent.ckpt", &ssm.rvt_config(), &device)
            .unwrap_err()
            .to_string();
    assert!(err.contains("ssm"), "{err}");
}
