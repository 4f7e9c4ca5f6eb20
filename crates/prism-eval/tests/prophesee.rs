//! The Prophesee / RVT protocol: filter, time matching, conversion, and a cross-check against a
//! transcription of RVT's Python evaluation (in `pycoco_eval.py`) run with pycocotools.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

mod common;

use common::{compare, floats, run_reference, Rng};
use prism_eval::prophesee::{
    evaluate, filter_boxes, match_times, to_coco, BoxFilter, PropheseeConfig, PropheseeError,
    Sequence, TimedBox, Window,
};
use serde_json::json;

fn tb(t_us: i64, x: f32, y: f32, w: f32, h: f32, class_id: u32, score: f32) -> TimedBox {
    TimedBox {
        t_us,
        x,
        y,
        w,
        h,
        class_id,
        score,
    }
}

#[test]
fn filters_follow_rvt() {
    let f = BoxFilter::gen1();
    assert_eq!(
        f,
        BoxFilter {
            skip_ts_us: 500_000,
            min_diag: 30.0,
            min_side: 10.0
        }
    );
    assert_eq!(
        BoxFilter::gen4(),
        f,
        "RVT evaluates 1 Mpx at half resolution: (60, 20) / 2"
    );
    assert_eq!(BoxFilter::gen4_full_resolution().min_diag, 60.0);
    // Time: strictly after skip_ts.
    assert!(!f.keep(&tb(500_000, 0.0, 0.0, 50.0, 50.0, 0, 1.0)));
    assert!(f.keep(&tb(500_001, 0.0, 0.0, 50.0, 50.0, 0, 1.0)));
    // Sides: >= 10; diagonal: w² + h² >= 900.
    assert!(
        f.keep(&tb(600_000, 0.0, 0.0, 10.0, 28.284_271, 0, 1.0))
            == (10.0f32 * 10.0 + 28.284_271f32 * 28.284_271 >= 900.0)
    );
    assert!(!f.keep(&tb(600_000, 0.0, 0.0, 9.99, 100.0, 0, 1.0)));
    assert!(
        !f.keep(&tb(600_000, 0.0, 0.0, 20.0, 20.0, 0, 1.0)),
        "diagonal 28.3 < 30"
    );
    assert!(
        f.keep(&tb(600_000, 0.0, 0.0, 18.0, 24.0, 0, 1.0)),
        "diagonal exactly 30"
    );
    let none = BoxFilter::none();
    assert!(none.keep(&tb(i64::MIN, 0.0, 0.0, 0.0, 0.0, 0, 0.0)));
    let boxes = [
        tb(0, 0.0, 0.0, 50.0, 50.0, 0, 1.0),
        tb(700_000, 1.0, 2.0, 50.0, 50.0, 1, 0.5),
    ];
    assert_eq!(filter_boxes(&boxes, &f), vec![boxes[1]]);
}

#[test]
fn match_times_windows_like_rvt() {
    let gt = [
        tb(100, 0.0, 0.0, 1.0, 1.0, 0, 0.0),
        tb(100, 0.0, 0.0, 1.0, 1.0, 0, 0.0),
        tb(150, 0.0, 0.0, 1.0, 1.0, 0, 0.0),
        tb(400, 0.0, 0.0, 1.0, 1.0, 0, 0.0),
    ];
    let dt: Vec<TimedBox> = [40, 50, 100, 150, 200, 201, 350, 450, 451]
        .iter()
        .map(|&t| tb(t, 0.0, 0.0, 1.0, 1.0, 0, 0.5))
        .collect();
    let w = match_times(&gt, &dt, 50);
    assert_eq!(
        w,
        vec![
            Window {
                t_us: 100,
                gt: 0..2,
                dt: 1..4
            },
            Window {
                t_us: 150,
                gt: 2..3,
                dt: 2..5
            },
            Window {
                t_us: 400,
                gt: 3..4,
                dt: 6..8
            },
        ]
    );
    assert!(match_times(&[], &dt, 50).is_empty());
}

#[test]
fn no_detections_gives_zeros_like_rvt() {
    let gt = [tb(600_000, 10.0, 10.0, 40.0, 40.0, 0, 0.0)];
    // The only detection is filtered out (too early), so no frame has a detection.
    let dt = [tb(400_000, 10.0, 10.0, 40.0, 40.0, 0, 0.9)];
    let m = evaluate(&[Sequence { gt: &gt, dt: &dt }], &PropheseeConfig::gen1()).expect("evaluate");
    assert_eq!(m.stats, [0.0; 12]);
    assert_eq!(m.per_class.len(), 2);
    assert_eq!((m.per_class[0].ap, m.per_class[0].num_gt), (0.0, 1));
}

#[test]
fn perfect_detections_score_one() {
    let gt = [
        tb(600_000, 10.0, 10.0, 40.0, 40.0, 0, 0.0),
        tb(600_000, 100.0, 10.0, 40.0, 50.0, 1, 0.0),
    ];
    let dt: Vec<TimedBox> = gt.iter().map(|b| TimedBox { score: 0.9, ..*b }).collect();
    let m = evaluate(&[Sequence { gt: &gt, dt: &dt }], &PropheseeConfig::gen1()).expect("evaluate");
    // One ground truth per class: precision 1 / (1 + eps); pycocotools gives these bits.
    assert_eq!(m.ap(), 0.999_999_999_999_999_8);
    assert_eq!(m.ap50(), 0.999_999_999_999_999_9);
}

#[test]
fn bad_input_is_an_error() {
    let ok = [tb(600_000, 10.0, 10.0, 40.0, 40.0, 0, 0.0)];
    let unsorted = [
        tb(700_000, 0.0, 0.0, 40.0, 40.0, 0, 0.5),
        tb(600_000, 0.0, 0.0, 40.0, 40.0, 0, 0.5),
    ];
    let err = evaluate(
        &[Sequence {
            gt: &ok,
            dt: &unsorted,
        }],
        &PropheseeConfig::gen1(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PropheseeError::Unsorted {
                sequence: 0,
                index: 1,
                ..
            }
        ),
        "{err}"
    );
    let nan = [tb(600_000, f32::NAN, 0.0, 40.0, 40.0, 0, 0.5)];
    let err = evaluate(&[Sequence { gt: &nan, dt: &ok }], &PropheseeConfig::gen1()).unwrap_err();
    assert!(matches!(err, PropheseeError::InvalidBox { .. }), "{err}");
    assert!(err.to_string().contains("ground-truth box 0"), "{err}");
}

#[test]
fn to_coco_numbers_images_and_annotations_like_rvt() {
    let gt = [
        tb(600_000, 10.0, 10.0, 40.0, 40.0, 0, 0.0),
        tb(600_000, 10.0, 10.0, 40.0, 40.0, 7, 0.0), // unknown class: dropped, id still used
        tb(700_000, 1.5, 2.5, 30.5, 20.25, 1, 0.0),
    ];
    let dt = [tb(650_000, 10.0, 10.0, 40.0, 40.0, 0, 0.75)];
    let (coco, dets) =
        to_coco(&[Sequence { gt: &gt, dt: &dt }], &PropheseeConfig::gen1()).expect("to_coco");
    assert_eq!(coco.images.iter().map(|i| i.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        coco.categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect::<Vec<_>>(),
        [(1, "car"), (2, "pedestrian")]
    );
    assert_eq!(
        coco.annotations.iter().map(|a| a.id).collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(coco.annotations[1].area, f64::from(30.5f32 * 20.25f32));
    assert_eq!(coco.annotations[1].category_id, 2);
    // The detection at 650 ms lies within 50 ms of both label times: it is in both images.
    assert_eq!(dets.iter().map(|d| d.image_id).collect::<Vec<_>>(), [1, 2]);
}

// ---- cross-check against RVT's Python code -----------------------------------------------------

fn random_f32(rng: &mut Rng, lo: f64, hi: f64) -> f32 {
    (lo + rng.unit() * (hi - lo)) as f32
}

fn random_size(rng: &mut Rng) -> (f32, f32) {
    match rng.range(0, 6) {
        0 => (random_f32(rng, 8.0, 12.0), random_f32(rng, 8.0, 40.0)), // around min side
        1 => {
            // around the diagonal limit 30 (and 60)
            let d = random_f32(rng, 27.0, 33.0) * if rng.chance(0.3) { 2.0 } else { 1.0 };
            let a = random_f32(rng, 0.3, 1.2);
            (d * a.cos(), d * a.sin())
        }
        2 => *rng.pick(&[(32.0, 32.0), (96.0, 96.0), (18.0, 24.0), (31.999, 32.001)]),
        3 => (random_f32(rng, 30.0, 34.0), random_f32(rng, 30.0, 34.0)), // around area 32²
        _ => (random_f32(rng, 5.0, 150.0), random_f32(rng, 5.0, 120.0)),
    }
}

struct RandomCase {
    config: PropheseeConfig,
    filter_json: serde_json::Value,
    sequences: Vec<(Vec<TimedBox>, Vec<TimedBox>)>,
}

fn random_prophesee_case(seed: u64) -> RandomCase {
    let mut rng = Rng::new(seed);
    let n_classes = rng.usize(2, 4);
    let (filter, filter_json) = match rng.range(0, 5) {
        0 => (BoxFilter::gen1(), Some(BoxFilter::gen1())),
        1 => (
            BoxFilter::gen4_full_resolution(),
            Some(BoxFilter::gen4_full_resolution()),
        ),
        2 => (BoxFilter::none(), None),
        3 => {
            let f = BoxFilter {
                skip_ts_us: 200_000,
                min_diag: 20.0,
                min_side: 5.0,
            };
            (f, Some(f))
        }
        _ => {
            let f = BoxFilter {
                skip_ts_us: 0,
                min_diag: 12.5,
                min_side: 4.5,
            };
            (f, Some(f))
        }
    };
    let filter_json = match filter_json {
        Some(f) => json!([f.skip_ts_us, f64::from(f.min_diag), f64::from(f.min_side)]),
        None => serde_json::Value::Null,
    };
    let config = PropheseeConfig {
        filter,
        time_tol_us: 50_000,
        width: 304,
        height: 240,
        classes: (0..n_classes).map(|c| format!("class{c}")).collect(),
    };
    let coarse = rng.chance(0.5);
    let score = |rng: &mut Rng| -> f32 {
        if coarse {
            rng.range(1, 10) as f32 / 10.0
        } else {
            random_f32(rng, 0.0, 1.0)
        }
    };
    let mut sequences = Vec::new();
    for _ in 0..rng.usize(1, 5) {
        let mut t = *rng.pick(&[0i64, 100_000, 450_000, 480_000, 500_000]);
        let step = *rng.pick(&[50_000i64, 33_333, 100_000, 200_000]);
        let mut gt = Vec::new();
        let mut dt = Vec::new();
        for _ in 0..rng.usize(2, 15) {
            t += step
                + if rng.chance(0.3) {
                    rng.range(0, 20_000) as i64
                } else {
                    0
                };
            for _ in 0..rng.usize(0, 7) {
                let (w, h) = random_size(&mut rng);
                let class_id = rng.range(0, n_classes as u64 + 1) as u32; // sometimes unknown
                let b = tb(
                    t,
                    random_f32(&mut rng, -10.0, 280.0),
                    random_f32(&mut rng, -10.0, 200.0),
                    w,
                    h,
                    class_id,
                    0.0,
                );
                gt.push(b);
                for _ in 0..rng.usize(0, 3) {
                    let dt_t =
                        t + *rng.pick(&[0i64, 0, 0, 20_000, -50_000, 50_000, 50_001, -50_001]);
                    let j = |rng: &mut Rng, v: f32, s: f32| v + random_f32(rng, -1.0, 1.0) * s;
                    let d = tb(
                        dt_t,
                        j(&mut rng, b.x, 0.1 * b.w),
                        j(&mut rng, b.y, 0.1 * b.h),
                        j(&mut rng, b.w, 0.1 * b.w).max(0.0),
                        j(&mut rng, b.h, 0.1 * b.h).max(0.0),
                        if rng.chance(0.9) {
                            class_id
                        } else {
                            rng.range(0, n_classes as u64) as u32
                        },
                        score(&mut rng),
                    );
                    dt.push(d);
                }
            }
            for _ in 0..rng.usize(0, 4) {
                let (w, h) = random_size(&mut rng);
                let d = tb(
                    t + rng.range(0, 60_000) as i64 - 30_000,
                    random_f32(&mut rng, -10.0, 280.0),
                    random_f32(&mut rng, -10.0, 200.0),
                    w,
                    h,
                    rng.range(0, n_classes as u64) as u32,
                    score(&mut rng),
                );
                dt.push(d);
            }
        }
        dt.sort_by_key(|b| b.t_us); // stable, as the boxes come
        if rng.chance(0.05) {
            dt.clear();
        }
        sequences.push((gt, dt));
    }
    RandomCase {
        config,
        filter_json,
        sequences,
    }
}

fn rows(boxes: &[TimedBox]) -> serde_json::Value {
    boxes
        .iter()
        .map(|b| {
            json!([
                b.t_us,
                f64::from(b.x),
                f64::from(b.y),
                f64::from(b.w),
                f64::from(b.h),
                b.class_id,
                f64::from(b.score)
            ])
        })
        .collect()
}

#[test]
fn prophesee_matches_rvt_python() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases_dir = dir.path().join("cases");
    std::fs::create_dir_all(&cases_dir).expect("mkdir");
    let mut ours = Vec::new();
    let mut zero_cases = 0;
    for seed in 0..60u64 {
        let case = random_prophesee_case(5000 + seed);
        let name = format!("case{seed:03}.json");
        let doc = json!({
            "classes": case.config.classes,
            "filter": case.filter_json,
            "time_tol": case.config.time_tol_us,
            "height": case.config.height,
            "width": case.config.width,
            "sequences": case.sequences.iter().map(|(g, d)| json!({"gt": rows(g), "dt": rows(d)})).collect::<Vec<_>>(),
        });
        std::fs::write(cases_dir.join(&name), doc.to_string()).expect("write case");
        let seqs: Vec<Sequence<'_>> = case
            .sequences
            .iter()
            .map(|(g, d)| Sequence { gt: g, dt: d })
            .collect();
        let metrics = evaluate(&seqs, &case.config).expect("evaluate");
        if metrics.stats == [0.0; 12] {
            zero_cases += 1;
        }
        ours.push((name, metrics));
    }
    assert!(zero_cases < 10, "too many degenerate cases: {zero_cases}");

    let Some(reference) = run_reference("prophesee", &cases_dir, &dir.path().join("out.json"))
    else {
        return;
    };
    let mut inexact = Vec::new();
    let mut worst: f64 = 0.0;
    for (name, metrics) in &ours {
        let r = &reference["cases"][name];
        worst = worst.max(compare(
            &format!("{name} stats"),
            &floats(&r["stats"]),
            &metrics.stats,
            &mut inexact,
        ));
        let ap: Vec<f64> = metrics.per_class.iter().map(|c| c.ap).collect();
        let ap50: Vec<f64> = metrics.per_class.iter().map(|c| c.ap50).collect();
        worst = worst.max(compare(
            &format!("{name} AP per class"),
            &floats(&r["ap"]),
            &ap,
            &mut inexact,
        ));
        worst = worst.max(compare(
            &format!("{name} AP50 per class"),
            &floats(&r["ap50"]),
            &ap50,
            &mut inexact,
        ));
    }
    eprintln!(
        "{} RVT cases ({zero_cases} without detections): largest difference {worst:e}, {} not bit-identical",
        ours.len(),
        inexact.len()
    );
    assert!(
        worst <= 1e-6,
        "differences above 1e-6:\n{}",
        inexact.join("\n")
    );
    assert!(
        inexact.is_empty(),
        "close but not bit-identical:\n{}",
        inexact.join("\n")
    );
}
