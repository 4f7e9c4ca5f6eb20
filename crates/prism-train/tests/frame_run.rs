//! The multimodal training run: with gradient accumulation, a run stopped after a checkpoint
//! and resumed follows the uninterrupted one step for step (same batches, same weights, same
//! optimizer moments), validates with COCO mAP, and leaves checkpoints that load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use prism_data::multimodal::{synth_mm, MmFolder, SynthMmOptions};
use prism_train::frame_run::{FrameRun, FrameRunOptions};
use prism_train::metrics_log::{read, Record};
use prism_train::mm_config::MmTrainConfig;
use prism_train::{Event, TrainDevice};

/// Burn draws initial weights from the device's global generator, which a run seeds: tests of
/// this file that build models run one at a time, so no other test draws between a run's seed
/// and its initialisation.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config() -> MmTrainConfig {
    let mut c = MmTrainConfig::resolve("mm-mit-b0-cssa-s3").unwrap();
    c.apply_overrides(&[
        "model.input_size=[64, 64]".into(),
        "train.batch_size=2".into(),
        "train.accumulate=2".into(),
        "train.steps=5".into(),
        "train.val_every=5".into(),
        "train.checkpoint_every=100".into(),
    ])
    .unwrap();
    c
}

fn losses(run_dir: &std::path::Path) -> (Vec<(usize, f32)>, usize) {
    let records = read(&run_dir.join("metrics.jsonl")).unwrap();
    let vals = records
        .iter()
        .filter(|r| matches!(r, Record::Val(_)))
        .count();
    let train = records
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(s) => Some((s.step, s.loss)),
            Record::Val(_) => None,
        })
        .collect();
    (train, vals)
}

#[test]
fn a_resumed_accumulating_run_follows_the_uninterrupted_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth_mm(
        &data,
        &SynthMmOptions {
            images: 10,
            seed: 5,
            size: [80, 60],
            clutter: true,
        },
    )
    .unwrap();
    let folder = MmFolder::open(&data).unwrap();
    let opts = |name: &str, resume: bool, stop_after: Option<usize>| FrameRunOptions {
        run_dir: dir.path().join(name),
        resume,
        stop_after,
        device: TrainDevice::Flex,
    };
    let run = |name, resume, stop_after| {
        let mut events = Vec::new();
        let summary = FrameRun::new(config(), opts(name, resume, stop_after), folder.clone())
            .unwrap()
            .run(|e| events.push(e.clone()))
            .unwrap();
        (summary, events)
    };
    let (whole, _) = run("whole", false, None);
    assert_eq!(whole.steps_done, 5);
    let val = whole.last_val.expect("validated at the last step");
    assert!((0.0..=1.0).contains(&val.map), "{val:?}");
    // Resumed once it has finished: nothing more is trained, the final validation is reported.
    let (again, _) = run("whole", true, None);
    assert_eq!((again.steps_done, again.last_val), (5, Some(val.clone())));
    run("split", false, Some(2));
    let (_, events) = run("split", true, None);
    assert!(
        matches!(
            events.first(),
            Some(Event::Started {
                start_step: 2,
                resumed: true,
                ..
            })
        ),
        "{:?}",
        events.first()
    );
    let (a, vals_a) = losses(&dir.path().join("whole"));
    let (b, vals_b) = losses(&dir.path().join("split"));
    assert_eq!(a.len(), 5);
    assert_eq!(
        a.iter().map(|s| s.0).collect::<Vec<_>>(),
        b.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    for ((step, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs().max(1.0),
            "step {step}: {x} vs {y}"
        );
    }
    assert_eq!((vals_a, vals_b), (1, 1));
    assert!(dir.path().join("whole/curves.png").is_file());

    // The same run in bf16 (train.precision): the same weights and batches, so each step's loss
    // is the float32 one within bfloat16's precision, and it validates (BatchNorm's running
    // statistics are back in float32 for the float32 evaluation).
    let mut bf16 = config();
    bf16.apply_overrides(&["train.precision=bf16".into()])
        .unwrap();
    let summary = FrameRun::new(bf16, opts("bf16", false, None), folder.clone())
        .unwrap()
        .run(|_| {})
        .unwrap();
    assert!(summary.last_val.is_some());
    let (c, _) = losses(&dir.path().join("bf16"));
    eprintln!("float32 {a:?}\nbf16 {c:?}");
    let (x, y) = (a[0].1, c[0].1);
    assert!(
        (x - y).abs() <= 2e-2 * x.abs() && x != y,
        "step 1: float32 {x}, bf16 {y}"
    );

    // And in fp16 with its loss scale: step 1's loss is the float32 one within float16's
    // precision (the forward pass does not depend on the scale), every step records its scale,
    // and the run validates.
    let mut fp16 = config();
    fp16.apply_overrides(&["train.precision=fp16".into()])
        .unwrap();
    let summary = FrameRun::new(fp16, opts("fp16", false, None), folder.clone())
        .unwrap()
        .run(|_| {})
        .unwrap();
    assert!(summary.last_val.is_some());
    let records: Vec<_> =
        prism_train::metrics_log::read(&dir.path().join("fp16").join("metrics.jsonl"))
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                prism_train::metrics_log::Record::Train(s) => Some(s),
                prism_train::metrics_log::Record::Val(_) => None,
            })
            .collect();
    assert_eq!(records.len(), 5);
    assert_eq!(records[0].loss_scale, Some(65536.0));
    for pair in records.windows(2) {
        let halved = pair[0]
            .loss_scale
            .map(|s| if pair[0].skipped { s / 2.0 } else { s });
        assert_eq!(pair[1].loss_scale, halved, "{records:?}");
    }
    let (x, y) = (a[0].1, records[0].loss);
    assert!(
        (x - y).abs() <= 1e-2 * x.abs() && x != y,
        "step 1: float32 {x}, fp16 {y}"
    );

    // The best checkpoint is a normal multimodal checkpoint.
    let best = prism_train::trainer::best_checkpoint(&dir.path().join("whole"));
    assert!(prism_models::mm::card::is_mm_checkpoint(&best));
    let (card, _) =
        prism_models::mm::card::load_checkpoint(&best, &burn::tensor::Device::flex()).unwrap();
    assert_eq!(card.model.input_size, [64, 64]);
}

#[test]
fn classes_that_differ_from_the_model_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    synth_mm(
        dir.path(),
        &SynthMmOptions {
            images: 4,
            seed: 1,
            size: [64, 64],
            clutter: true,
        },
    )
    .unwrap();
    std::fs::write(dir.path().join("classes.txt"), "cat\ndog\n").unwrap();
    let err = FrameRun::new(
        config(),
        FrameRunOptions {
            run_dir: dir.path().join("run"),
            resume: false,
            stop_after: None,
            device: TrainDevice::Flex,
        },
        MmFolder::open(dir.path()).unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("classes"), "{err}");
}

#[test]
fn a_run_starts_from_a_pretrained_backbone_that_fits_and_refuses_one_that_does_not() {
    let _serial = serial();
    use prism_models::mit::checkpoint::{save_backbone, BackboneCard};
    use prism_models::mit::MitConfig;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth_mm(
        &data,
        &SynthMmOptions {
            images: 6,
            seed: 2,
            size: [64, 64],
            clutter: true,
        },
    )
    .unwrap();
    let folder = MmFolder::open(&data).unwrap();
    let device = burn::tensor::Device::flex();
    for preset in ["mit-b0", "mit-b1"] {
        let mit = MitConfig::preset(preset).unwrap().init(&device);
        let card = BackboneCard {
            model: preset.into(),
            in_channels: 3,
            source: "test".into(),
        };
        save_backbone(&mit, &card, &dir.path().join(preset)).unwrap();
    }
    let run = |backbone: &str| {
        let mut c = config();
        c.train.pretrained = Some(dir.path().join(backbone));
        c.train.steps = 1;
        c.train.val_every = 0;
        FrameRun::new(
            c,
            FrameRunOptions {
                run_dir: dir.path().join(format!("run-{backbone}")),
                resume: false,
                stop_after: None,
                device: TrainDevice::Flex,
            },
            folder.clone(),
        )
        .unwrap()
        .run(|_| {})
    };
    assert_eq!(run("mit-b0").unwrap().steps_done, 1);
    let err = run("mit-b1").unwrap_err().to_string();
    assert!(err.contains("not mit-b0"), "{err}");
}
