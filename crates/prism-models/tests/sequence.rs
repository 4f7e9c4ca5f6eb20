//! The state-carry API is exact: 10 windows processed step by step, in chunks of 3 or in one
//! chunk of 10 give identical outputs and states; the carried state does influence the output;
//! batch entries are independent; window/grid partitions have MaxViT semantics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use prism_models::rvt::partition::{
    grid_partition, grid_reverse, window_partition, window_reverse,
};
use prism_models::rvt::{Rvt, RvtConfig, RvtState};

const HW: [usize; 2] = [64, 96];

fn small_config() -> RvtConfig {
    // Tiny widths, partition 2x3 so that every stage (16x24 ... 2x3) is divisible.
    let mut config = RvtConfig::preset("rvt-tiny-gen1").expect("preset");
    config.partition_size = [2, 3];
    config.input_size = HW;
    config
}

fn windows(n: usize, batch: usize, device: &Device) -> Vec<Tensor<4>> {
    (0..n)
        .map(|_| {
            Tensor::<4>::random(
                [batch, 20, HW[0], HW[1]],
                Distribution::Uniform(0.0, 10.0),
                device,
            )
            .floor()
        })
        .collect()
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32")
}

fn run_chunked(
    model: &Rvt,
    config: &RvtConfig,
    xs: &[Tensor<4>],
    chunk: usize,
    device: &Device,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut state = RvtState::zeros(config, xs[0].dims()[0], HW, device);
    let mut outs = Vec::new();
    for c in xs.chunks(chunk) {
        let (ys, s) = model.forward_sequence(c.to_vec(), state);
        outs.extend(ys.into_iter().map(to_vec));
        state = s;
    }
    (outs, state.into_flat().into_iter().map(to_vec).collect())
}

#[test]
fn chunking_does_not_change_outputs() {
    let device = Device::flex();
    let config = small_config();
    let model = config.init(&device);
    let xs = windows(10, 1, &device);
    let (o1, s1) = run_chunked(&model, &config, &xs, 1, &device);
    let (o3, s3) = run_chunked(&model, &config, &xs, 3, &device);
    let (o10, s10) = run_chunked(&model, &config, &xs, 10, &device);
    assert_eq!(o1.len(), 10);
    assert_eq!(o1, o3);
    assert_eq!(o1, o10);
    assert_eq!(s1, s3);
    assert_eq!(s1, s10);

    // The carried state matters: window 5 from a zero state differs from window 5 in sequence.
    let (fresh, _) = model.forward(xs[5].clone(), RvtState::zeros(&config, 1, HW, &device));
    let fresh = to_vec(fresh);
    let diff = fresh
        .iter()
        .zip(&o1[5])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff > 1e-6, "state had no effect ({diff})");
    // ...and the first window equals a fresh start.
    assert_eq!(
        to_vec(
            model
                .forward(xs[0].clone(), RvtState::zeros(&config, 1, HW, &device))
                .0
        ),
        o1[0]
    );
}

#[test]
fn batch_entries_are_independent() {
    let device = Device::flex();
    let config = small_config();
    let model = config.init(&device);
    let xs = windows(3, 2, &device);
    let (both, _) = model.forward_sequence(xs.clone(), RvtState::zeros(&config, 2, HW, &device));
    let (second, _) = model.forward_sequence(
        xs.iter().map(|x| x.clone().narrow(0, 1, 1)).collect(),
        RvtState::zeros(&config, 1, HW, &device),
    );
    for (b, s) in both.into_iter().zip(second) {
        let b = to_vec(b.narrow(0, 1, 1));
        let s = to_vec(s);
        let diff = b
            .iter()
            .zip(&s)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "batch entry depends on its neighbour: {diff}");
    }
}

#[test]
fn partitions_follow_maxvit_semantics() {
    let device = Device::flex();
    // 4x6 map, value = 10*y + x, partition 2x3.
    let vals: Vec<f32> = (0..4)
        .flat_map(|y| (0..6).map(move |x| (10 * y + x) as f32))
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(vals, [1, 4, 6, 1]), &device);
    let w = to_vec(window_partition(x.clone(), [2, 3]));
    // Window 0: contiguous top-left 2x3 block; window 1: top-right block.
    assert_eq!(&w[..6], &[0., 1., 2., 10., 11., 12.]);
    assert_eq!(&w[6..12], &[3., 4., 5., 13., 14., 15.]);
    let g = to_vec(grid_partition(x.clone(), [2, 3]));
    // Grid group 0: rows {0, 2} x cols {0, 2, 4} (stride H/2 = 2, W/3 = 2); group 1 shifts x by 1.
    assert_eq!(&g[..6], &[0., 2., 4., 20., 22., 24.]);
    assert_eq!(&g[6..12], &[1., 3., 5., 21., 23., 25.]);
    let orig = to_vec(x.clone());
    assert_eq!(
        to_vec(window_reverse(
            window_partition(x.clone(), [2, 3]),
            [2, 3],
            1,
            4,
            6
        )),
        orig
    );
    assert_eq!(
        to_vec(grid_reverse(grid_partition(x, [2, 3]), [2, 3], 1, 4, 6)),
        orig
    );
}

#[test]
fn one_mpx_preset_runs_at_384x640() {
    let device = Device::flex();
    let config = RvtConfig::preset("rvt-tiny-1mpx").expect("preset");
    assert_eq!(config.partition_size, [6, 10]);
    let model = config.init(&device);
    let x = Tensor::<4>::random([1, 20, 384, 640], Distribution::Uniform(0.0, 10.0), &device);
    let (raw, state) = model.forward_decoded(x, RvtState::zeros(&config, 1, [384, 640], &device));
    // 48x80 + 24x40 + 12x20 anchors, 4 box + 1 obj + 3 classes.
    assert_eq!(raw.dims(), [1, 5040, 8]);
    assert_eq!(config.num_anchors([384, 640]), 5040);
    assert_eq!(state.h[0].dims(), [1, 32, 96, 160]);
    assert_eq!(state.c[3].dims(), [1, 256, 12, 20]);
}
