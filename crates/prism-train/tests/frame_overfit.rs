//! The multimodal detector learns: on four synthetic RGB + thermal + event images, a few
//! hundred frame-training steps (letterbox, YOLOX loss with SimOTA, AdamW) bring the loss down
//! and the decoded detections onto the labelled objects. Shows that data, model, loss and
//! decode agree, as RVT's overfit test does for events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::module::Module;
use burn::tensor::Device;
use prism_data::multimodal::{letterbox, synth_mm, Letterbox, MmFolder, SynthMmOptions};
use prism_models::mm::MmDetectorConfig;
use prism_train::frame::{frame_batch, FrameTrainer};

const SIZE: [usize; 2] = [96, 64];

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

#[test]
fn a_fused_detector_overfits_four_synthetic_images() {
    let dir = tempfile::tempdir().unwrap();
    synth_mm(
        dir.path(),
        &SynthMmOptions {
            images: 4,
            seed: 11,
            size: SIZE,
            clutter: true,
        },
    )
    .unwrap();
    let folder = MmFolder::open(dir.path()).unwrap();
    let samples: Vec<_> = folder
        .pool
        .samples
        .iter()
        .map(|s| {
            let (image, boxes) = folder.load(s).unwrap();
            let placement = Letterbox::fit(image.width, image.height, SIZE, 1.0, [0.0, 0.0]);
            letterbox(&image, &boxes, &placement)
        })
        .collect();
    let device = Device::flex().autodiff();
    let batch = frame_batch(&samples, &device);
    let classes = folder.classes.len();
    let model = MmDetectorConfig::from_name("mm-mit-b0-cssa-s3", classes)
        .unwrap()
        .init(&device)
        .unwrap();
    let mut trainer = FrameTrainer::new(model, [SIZE[1], SIZE[0]], classes, 0.05, 10.0);
    let mut losses = Vec::new();
    for step in 0..400 {
        let lr = if step < 20 {
            2e-3 * (step + 1) as f64 / 20.0
        } else {
            2e-3
        };
        let s = trainer.step(&batch, lr);
        assert!(s.loss.is_finite(), "step {step}: {s:?}");
        losses.push(s.loss);
    }
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    eprintln!("loss {first:.3} -> {last:.3}");
    assert!(last < 0.3 * first, "loss {first} -> {last}");

    // Inference mode (BatchNorm on its running statistics): every object found.
    let model = trainer.model().valid();
    let eval = frame_batch(&samples, &Device::flex());
    let decoded = model.forward_decoded(eval.images);
    let [n, a, c] = decoded.dims();
    let rows: Vec<f32> = decoded.into_data().try_into_vec::<f32>().unwrap();
    let (mut found, mut total) = (0, 0);
    for (i, (_, boxes)) in samples.iter().enumerate() {
        for gt in boxes {
            total += 1;
            let hit = (0..a).any(|j| {
                let r = &rows[(i * a + j) * c..(i * a + j + 1) * c];
                let score = r[4] * r[5 + gt.class];
                let b = [
                    r[0] - r[2] / 2.0,
                    r[1] - r[3] / 2.0,
                    r[0] + r[2] / 2.0,
                    r[1] + r[3] / 2.0,
                ];
                score > 0.3 && iou(b, gt.corners) > 0.5
            });
            found += usize::from(hit);
        }
    }
    eprintln!("found {found} of {total} objects in {n} images");
    assert!(
        total > 0 && found * 4 >= total * 3,
        "found {found} of {total}"
    );
}
