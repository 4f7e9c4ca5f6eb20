//! prism-eval's COCO evaluator against pycocotools 2.0.11 on seeded random datasets.
//!
//! The cases are built to hit every branch pycocotools has: crowded scenes with overlapping
//! boxes, empty images, categories without ground truth, more than 100 detections per image,
//! tiny / medium / large boxes and areas exactly on the range limits, tied scores, crowd regions,
//! a ground-truth id 0, detections of unknown categories, unsorted ids, an empty result list.
//! All cases go through one Python process; every number must agree bit for bit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

mod common;

use common::{compare, floats, run_reference, Rng};
use prism_eval::coco::{
    detections_from_json_slice, evaluate, iou_thresholds, recall_thresholds, CocoAnnotation,
    CocoCategory, CocoDetection, CocoGt, CocoImage, CocoMetrics,
};

const RANDOM_CASES: u64 = 64;

/// Coordinates on a grid whose values print and re-parse exactly (`k / d`).
struct Grid(f64);

impl Grid {
    fn snap(&self, v: f64) -> f64 {
        (v * self.0).round() / self.0
    }
}

fn random_box(rng: &mut Rng, grid: &Grid, size_class: u64) -> [f64; 4] {
    let (lo, hi) = match size_class {
        0 => (1.0, 31.0),
        1 => (20.0, 100.0),
        _ => (90.0, 300.0),
    };
    let w = grid.snap(lo + rng.unit() * (hi - lo));
    let h = grid.snap(lo + rng.unit() * (hi - lo));
    let x = grid.snap(rng.unit() * 600.0 - 20.0);
    let y = grid.snap(rng.unit() * 400.0 - 20.0);
    [x, y, w, h]
}

fn jitter(rng: &mut Rng, grid: &Grid, b: [f64; 4], amount: f64) -> [f64; 4] {
    let mut j = |v: f64, scale: f64| grid.snap(v + (rng.unit() * 2.0 - 1.0) * amount * scale);
    let w = j(b[2], b[2] * 0.1).max(0.0);
    let h = j(b[3], b[3] * 0.1).max(0.0);
    [j(b[0], b[2] * 0.1), j(b[1], b[3] * 0.1), w, h]
}

fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.usize(0, i + 1);
        v.swap(i, j);
    }
}

fn random_case(seed: u64) -> (CocoGt, Vec<CocoDetection>) {
    let mut rng = Rng::new(seed);
    let grid = Grid(*rng.pick(&[1.0, 2.0, 4.0, 10.0]));
    let coarse_scores = rng.chance(0.5);
    let score = |rng: &mut Rng| {
        if coarse_scores {
            rng.range(0, 11) as f64 / 10.0
        } else {
            rng.range(0, 1000) as f64 / 1000.0
        }
    };

    let n_images = rng.usize(1, 9);
    let mut image_ids: Vec<i64> = Vec::new();
    while image_ids.len() < n_images {
        let id = rng.range(0, 100) as i64;
        if !image_ids.contains(&id) {
            image_ids.push(id);
        }
    }
    let n_cats = rng.usize(1, 5);
    let mut cat_ids: Vec<i64> = Vec::new();
    while cat_ids.len() < n_cats {
        let id = rng.range(1, 20) as i64;
        if !cat_ids.contains(&id) {
            cat_ids.push(id);
        }
    }
    // Sometimes one category never gets ground truth.
    let empty_cat = if n_cats > 1 && rng.chance(0.5) {
        Some(cat_ids[0])
    } else {
        None
    };

    let mut annotations = Vec::new();
    let mut dets = Vec::new();
    let mut next_id = if rng.chance(0.15) { 0 } else { 1 };
    for &img in &image_ids {
        let scene = rng.range(0, 10); // 0-1 empty, 2-6 normal, 7-9 crowded
        for &cat in &cat_ids {
            let n_gt = match scene {
                0 | 1 => 0,
                2..=6 => rng.usize(0, 6),
                _ => rng.usize(8, 30),
            };
            let n_gt = if Some(cat) == empty_cat { 0 } else { n_gt };
            let centre = random_box(&mut rng, &grid, 2);
            for _ in 0..n_gt {
                let crowd = rng.chance(0.08);
                let bbox = if scene >= 7 && !crowd {
                    // Overlapping boxes around a common centre.
                    jitter(&mut rng, &grid, [centre[0], centre[1], 40.0, 40.0], 30.0)
                } else if rng.chance(0.1) {
                    // Exactly on the small/medium/large limits.
                    let s = *rng.pick(&[32.0, 96.0]);
                    [
                        grid.snap(rng.unit() * 300.0),
                        grid.snap(rng.unit() * 300.0),
                        s,
                        s,
                    ]
                } else {
                    let size = if crowd { 2 } else { rng.range(0, 3) };
                    random_box(&mut rng, &grid, size)
                };
                let area = match rng.range(0, 10) {
                    0..=6 => bbox[2] * bbox[3],
                    7 | 8 => (bbox[2] * bbox[3] * 80.0).round() / 100.0,
                    _ => *rng.pick(&[1024.0, 9216.0, 0.0]),
                };
                annotations.push(CocoAnnotation {
                    id: next_id,
                    image_id: img,
                    category_id: cat,
                    bbox,
                    area,
                    iscrowd: crowd,
                });
                next_id += 1;
                // Detections near this ground truth: none, one, or duplicates.
                let copies = match rng.range(0, 10) {
                    0 | 1 => 0,
                    2..=7 => 1,
                    _ => rng.usize(2, 5),
                };
                for _ in 0..copies {
                    let amount = *rng.pick(&[0.0, 1.0, 3.0, 8.0]);
                    let b = if crowd {
                        let inner = [bbox[0] + 5.0, bbox[1] + 5.0, 30.0, 30.0];
                        jitter(&mut rng, &grid, inner, amount)
                    } else {
                        jitter(&mut rng, &grid, bbox, amount)
                    };
                    dets.push(CocoDetection {
                        image_id: img,
                        category_id: cat,
                        bbox: b,
                        score: score(&mut rng),
                    });
                }
            }
            // False positives; sometimes far more than 100 in one image and category.
            let n_fp = if rng.chance(0.08) {
                rng.usize(100, 180)
            } else {
                rng.usize(0, 5)
            };
            for _ in 0..n_fp {
                let size = rng.range(0, 3);
                let bbox = if scene >= 7 && rng.chance(0.5) {
                    jitter(&mut rng, &grid, [centre[0], centre[1], 40.0, 40.0], 40.0)
                } else {
                    random_box(&mut rng, &grid, size)
                };
                dets.push(CocoDetection {
                    image_id: img,
                    category_id: cat,
                    bbox,
                    score: score(&mut rng),
                });
            }
        }
        if rng.chance(0.1) {
            // A category the ground truth does not have: pycocotools drops it.
            let bbox = random_box(&mut rng, &grid, 1);
            dets.push(CocoDetection {
                image_id: img,
                category_id: 999,
                bbox,
                score: 0.5,
            });
        }
    }
    if rng.chance(0.3) {
        shuffle(&mut rng, &mut annotations);
    }
    if rng.chance(0.5) {
        shuffle(&mut rng, &mut dets);
    }
    if rng.chance(0.05) {
        dets.clear();
    }
    let mut images: Vec<CocoImage> = image_ids
        .iter()
        .map(|&id| CocoImage {
            id,
            width: Some(640),
            height: Some(480),
            file_name: None,
        })
        .collect();
    shuffle(&mut rng, &mut images);
    let mut categories: Vec<CocoCategory> = cat_ids
        .iter()
        .map(|&id| CocoCategory {
            id,
            name: format!("c{id}"),
            supercategory: None,
        })
        .collect();
    shuffle(&mut rng, &mut categories);
    (
        CocoGt {
            images,
            annotations,
            categories,
        },
        dets,
    )
}

/// Hand-made cases: perfect predictions (pycocotools' 0.9999999999999998), no ground truth at
/// all, a single crowd region.
fn special_cases() -> Vec<(CocoGt, Vec<CocoDetection>)> {
    let image = |id| CocoImage {
        id,
        width: None,
        height: None,
        file_name: None,
    };
    let cat = |id| CocoCategory {
        id,
        name: format!("c{id}"),
        supercategory: None,
    };
    let ann = |id, image_id, bbox: [f64; 4], iscrowd| CocoAnnotation {
        id,
        image_id,
        category_id: 1,
        bbox,
        area: bbox[2] * bbox[3],
        iscrowd,
    };
    let det = |image_id, bbox, score| CocoDetection {
        image_id,
        category_id: 1,
        bbox,
        score,
    };
    let b = [10.0, 10.0, 50.0, 40.0];
    vec![
        (
            CocoGt {
                images: vec![image(1)],
                annotations: vec![ann(1, 1, b, false)],
                categories: vec![cat(1)],
            },
            vec![det(1, b, 0.9)],
        ),
        (
            CocoGt {
                images: vec![image(1), image(2)],
                annotations: vec![],
                categories: vec![cat(1), cat(2)],
            },
            vec![det(1, b, 0.9), det(2, b, 0.3)],
        ),
        (
            CocoGt {
                images: vec![image(1)],
                annotations: vec![
                    ann(1, 1, [0.0, 0.0, 200.0, 200.0], true),
                    ann(2, 1, b, false),
                ],
                categories: vec![cat(1)],
            },
            vec![
                det(1, [20.0, 20.0, 30.0, 30.0], 0.8),
                det(1, [100.0, 100.0, 30.0, 30.0], 0.7),
                det(1, b, 0.6),
            ],
        ),
    ]
}

#[test]
fn coco_matches_pycocotools_on_random_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases_dir = dir.path().join("cases");
    let mut cases = special_cases();
    cases.extend((0..RANDOM_CASES).map(|seed| random_case(1000 + seed)));
    let mut ours: Vec<(String, CocoMetrics)> = Vec::new();
    let mut total_dets = 0;
    let mut max_dets_per_group = 0;
    for (i, (gt, dets)) in cases.iter().enumerate() {
        let name = format!("case{i:03}");
        let case_dir = cases_dir.join(&name);
        std::fs::create_dir_all(&case_dir).expect("mkdir");
        let gt_path = case_dir.join("gt.json");
        let dt_path = case_dir.join("dt.json");
        prism_eval::write_ground_truth(&gt_path, gt).expect("write gt");
        prism_eval::write_detections(&dt_path, dets).expect("write dt");
        // What is evaluated is what was read back: the files round-trip exactly.
        let gt_read = prism_eval::load_ground_truth(&gt_path).expect("load gt");
        let dt_read = prism_eval::load_detections(&dt_path).expect("load dt");
        assert_eq!(&gt_read, gt, "{name}: ground truth round trip");
        assert_eq!(&dt_read, dets, "{name}: detections round trip");
        let metrics = evaluate(&gt_read, &dt_read).expect("evaluate");
        ours.push((name, metrics));
        total_dets += dets.len();
        let mut groups = std::collections::HashMap::new();
        for d in dets {
            *groups.entry((d.image_id, d.category_id)).or_insert(0usize) += 1;
        }
        max_dets_per_group = max_dets_per_group.max(groups.values().copied().max().unwrap_or(0));
    }
    assert!(
        max_dets_per_group > 100,
        "the cases must include > 100 detections per image"
    );

    let Some(reference) = run_reference("coco", &cases_dir, &dir.path().join("out.json")) else {
        return;
    };
    let mut inexact = Vec::new();
    compare(
        "iouThrs",
        &floats(&reference["iou_thrs"]),
        &iou_thresholds(),
        &mut inexact,
    );
    compare(
        "recThrs",
        &floats(&reference["rec_thrs"]),
        &recall_thresholds(),
        &mut inexact,
    );
    let mut worst: f64 = 0.0;
    let mut values = 0;
    for (name, metrics) in &ours {
        let r = &reference["cases"][name];
        let stats = floats(&r["stats"]);
        worst = worst.max(compare(
            &format!("{name} stats"),
            &stats,
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
        values += stats.len() + 2 * ap.len();
    }
    eprintln!(
        "{} cases ({total_dets} detections), {values} values compared with pycocotools: \
         largest difference {worst:e}, {} not bit-identical",
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
        "values that are close but not bit-identical:\n{}",
        inexact.join("\n")
    );
}

#[test]
fn generated_detection_json_is_readable() {
    let (_, dets) = random_case(7);
    let text = prism_eval::coco::detections_to_json(&dets).expect("json");
    assert_eq!(
        detections_from_json_slice(text.as_bytes(), "x").expect("parse"),
        dets
    );
}
