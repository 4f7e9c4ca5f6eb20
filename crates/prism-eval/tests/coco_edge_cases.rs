//! Edge cases of the COCO evaluator, with the values pycocotools 2.0.11 gives for them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

use prism_eval::coco::iou::iou;
use prism_eval::coco::{
    detections_from_json_slice, evaluate, CocoAnnotation, CocoCategory, CocoDetection, CocoError,
    CocoGt, CocoImage, STAT_NAMES,
};

fn image(id: i64) -> CocoImage {
    CocoImage {
        id,
        width: Some(640),
        height: Some(480),
        file_name: None,
    }
}

fn cat(id: i64) -> CocoCategory {
    CocoCategory {
        id,
        name: format!("class{id}"),
        supercategory: None,
    }
}

fn ann(id: i64, image_id: i64, category_id: i64, bbox: [f64; 4]) -> CocoAnnotation {
    CocoAnnotation {
        id,
        image_id,
        category_id,
        bbox,
        area: bbox[2] * bbox[3],
        iscrowd: false,
    }
}

fn det(image_id: i64, category_id: i64, bbox: [f64; 4], score: f64) -> CocoDetection {
    CocoDetection {
        image_id,
        category_id,
        bbox,
        score,
    }
}

const B: [f64; 4] = [10.0, 10.0, 50.0, 40.0]; // area 2000: medium

/// `n_cats` categories, each with one ground truth in image 1, each detected exactly.
fn perfect(n_cats: i64, gts_per_cat: i64) -> (CocoGt, Vec<CocoDetection>) {
    let mut gt = CocoGt {
        images: vec![image(1)],
        categories: (1..=n_cats).map(cat).collect(),
        annotations: vec![],
    };
    let mut dets = vec![];
    for c in 1..=n_cats {
        for g in 0..gts_per_cat {
            let b = [10.0 + 60.0 * g as f64, 10.0 + 50.0 * c as f64, 50.0, 40.0];
            gt.annotations
                .push(ann(gt.annotations.len() as i64 + 1, 1, c, b));
            dets.push(det(1, c, b, 0.9));
        }
    }
    (gt, dets)
}

#[test]
fn perfect_predictions_give_pycocotools_bits() {
    // tp / (tp + fp + eps) = 1 / (1 + 2.2e-16) for a single ground truth: pycocotools reports
    // 0.9999999999999998 for AP and 0.9999999999999999 for AP50 / AP75 (numpy's pairwise sum).
    let (gt, dets) = perfect(1, 1);
    let m = evaluate(&gt, &dets).expect("evaluate");
    assert_eq!(m.ap(), 0.999_999_999_999_999_8);
    assert_eq!(m.ap50(), 0.999_999_999_999_999_9);
    assert_eq!(m.ap75(), 0.999_999_999_999_999_9);
    assert_eq!(
        (m.ap_small(), m.ap_medium(), m.ap_large()),
        (-1.0, 0.999_999_999_999_999_8, -1.0)
    );
    assert_eq!((m.ar1(), m.ar10(), m.ar100()), (1.0, 1.0, 1.0));
    assert_eq!(
        (m.ar_small(), m.ar_medium(), m.ar_large()),
        (-1.0, 1.0, -1.0)
    );
    // Three categories: the pairwise sum lands on the other neighbour of 1.
    let (gt, dets) = perfect(3, 1);
    let m = evaluate(&gt, &dets).expect("evaluate");
    assert_eq!(
        (m.ap(), m.ap50()),
        (0.999_999_999_999_999_9, 0.999_999_999_999_999_8)
    );
    // Two ground truths: the envelope lifts the first precision to 2 / 2 = 1.
    let (gt, dets) = perfect(1, 2);
    assert_eq!(evaluate(&gt, &dets).expect("evaluate").ap(), 1.0);
}

#[test]
fn empty_images_without_detections_change_nothing() {
    let (mut gt, dets) = perfect(1, 2);
    let before = evaluate(&gt, &dets).expect("evaluate");
    gt.images.extend([image(2), image(3)]);
    assert_eq!(evaluate(&gt, &dets).expect("evaluate"), before);
    // A detection on an empty image is a false positive ranked first: precision drops.
    let mut with_fp = dets.clone();
    with_fp.push(det(2, 1, B, 0.95));
    let after = evaluate(&gt, &with_fp).expect("evaluate");
    assert!(
        after.ap() < before.ap(),
        "{} !< {}",
        after.ap(),
        before.ap()
    );
}

#[test]
fn class_without_ground_truth_is_minus_one_and_left_out_of_the_mean() {
    let (mut gt, mut dets) = perfect(1, 2);
    let alone = evaluate(&gt, &dets).expect("evaluate");
    gt.categories.push(cat(7));
    dets.push(det(1, 7, B, 0.99)); // detections of it change nothing either
    let m = evaluate(&gt, &dets).expect("evaluate");
    assert_eq!(m.stats, alone.stats);
    let c7 = &m.per_class[1];
    assert_eq!(
        (c7.category_id, c7.ap, c7.ap50, c7.num_gt, c7.num_detections),
        (7, -1.0, -1.0, 0, 1)
    );
}

#[test]
fn no_detections_at_all() {
    let (gt, _) = perfect(2, 2);
    let m = evaluate(&gt, &[]).expect("evaluate");
    // Every ground truth is medium: 0 where there is ground truth, -1 elsewhere.
    assert_eq!(
        m.stats,
        [0.0, 0.0, 0.0, -1.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0, -1.0]
    );
    assert!(m.per_class.iter().all(|c| c.ap == 0.0 && c.ap50 == 0.0));
    // No ground truth and no detections: nothing can be measured.
    let empty = CocoGt {
        images: vec![image(1)],
        categories: vec![cat(1)],
        annotations: vec![],
    };
    assert_eq!(evaluate(&empty, &[]).expect("evaluate").stats, [-1.0; 12]);
}

#[test]
fn crowd_regions_absorb_detections() {
    let crowd = CocoAnnotation {
        iscrowd: true,
        ..ann(2, 1, 1, [200.0, 200.0, 200.0, 200.0])
    };
    let gt = CocoGt {
        images: vec![image(1)],
        categories: vec![cat(1)],
        annotations: vec![ann(1, 1, 1, B), crowd],
    };
    let base = vec![det(1, 1, B, 0.5)];
    let m0 = evaluate(&gt, &base).expect("evaluate");
    // Two detections inside the crowd region, ranked above the true positive: ignored, not
    // false positives (IoU with a crowd = intersection / detection area = 1).
    let mut dets = base.clone();
    dets.push(det(1, 1, [210.0, 210.0, 20.0, 20.0], 0.9));
    dets.push(det(1, 1, [250.0, 250.0, 30.0, 30.0], 0.8));
    let m = evaluate(&gt, &dets).expect("evaluate");
    assert_eq!(m.per_class[0].ap, m0.per_class[0].ap);
    // Same numbers, except AR@1: the single allowed detection is now the ignored one.
    let mut expected = m0.stats;
    expected[6] = 0.0;
    assert_eq!(m.stats, expected);
    // Crowds are not counted as ground truth.
    assert_eq!(m0.per_class[0].num_gt, 1);
    // Half inside: IoU 0.5 against the crowd, still matched at IoU 0.5 only.
    assert_eq!(
        iou(
            &[190.0, 200.0, 20.0, 10.0],
            &[200.0, 200.0, 200.0, 200.0],
            true
        ),
        0.5
    );
}

#[test]
fn only_the_top_100_detections_per_image_count() {
    let gt = CocoGt {
        images: vec![image(1)],
        categories: vec![cat(1)],
        annotations: vec![ann(1, 1, 1, B)],
    };
    let far = [500.0, 400.0, 10.0, 10.0];
    let run = |n_above: usize| {
        let mut dets: Vec<CocoDetection> = (0..n_above)
            .map(|i| det(1, 1, far, 0.9 - i as f64 * 1e-4))
            .collect();
        dets.push(det(1, 1, B, 0.1));
        evaluate(&gt, &dets).expect("evaluate")
    };
    // Ranked 100th: found (recall 1), ranked 101st: cut before matching.
    assert_eq!(run(99).ar100(), 1.0);
    assert_eq!(run(100).ar100(), 0.0);
    assert_eq!(run(100).ap(), 0.0);
    assert_eq!(run(9).ar10(), 1.0);
    assert_eq!(run(10).ar10(), 0.0);
    assert_eq!(run(1).ar1(), 0.0);
}

#[test]
fn tied_scores_keep_file_order() {
    let gt = CocoGt {
        images: vec![image(1)],
        categories: vec![cat(1)],
        annotations: vec![ann(1, 1, 1, B)],
    };
    let tp = det(1, 1, B, 0.5);
    let fp = det(1, 1, [300.0, 300.0, 50.0, 40.0], 0.5);
    // Stable sort: the first of equal scores ranks first, as numpy's mergesort.
    let tp_first = evaluate(&gt, &[tp.clone(), fp.clone()]).expect("evaluate");
    let fp_first = evaluate(&gt, &[fp, tp]).expect("evaluate");
    assert_eq!(tp_first.ap50(), 0.999_999_999_999_999_9);
    assert_eq!(fp_first.ap50(), 0.5);
}

#[test]
fn ground_truth_id_zero_counts_as_unmatched_like_pycocotools() {
    // pycocotools records the matched ground truth's id and tests `dtm != 0`.
    let gt = CocoGt {
        images: vec![image(1)],
        categories: vec![cat(1)],
        annotations: vec![ann(0, 1, 1, B)],
    };
    let m = evaluate(&gt, &[det(1, 1, B, 0.9)]).expect("evaluate");
    assert_eq!((m.ap(), m.ar100()), (0.0, 0.0));
}

#[test]
fn unknown_category_detections_are_dropped() {
    let (gt, dets) = perfect(1, 1);
    let mut more = dets.clone();
    more.push(det(1, 42, B, 0.99));
    assert_eq!(
        evaluate(&gt, &more).expect("evaluate"),
        evaluate(&gt, &dets).expect("evaluate")
    );
}

#[test]
fn json_leniencies_and_round_trip() {
    let text = br#"{"images": [{"id": 3, "width": 10, "height": 10, "extra": 1}],
        "annotations": [
          {"id": 1, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": false},
          {"id": 2, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 5.5, "iscrowd": 1, "ignore": 0},
          {"id": 3, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4]}],
        "categories": [{"id": 1, "name": "car", "supercategory": "vehicle"}]}"#;
    let gt = CocoGt::from_json_slice(text, "test").expect("parse");
    assert_eq!(gt.annotations[0].area, 12.0, "missing area = w * h");
    assert!(!gt.annotations[0].iscrowd && gt.annotations[1].iscrowd && !gt.annotations[2].iscrowd);
    assert_eq!(gt.annotations[1].area, 5.5);
    let again =
        CocoGt::from_json_slice(gt.to_json().expect("json").as_bytes(), "again").expect("reparse");
    assert_eq!(again, gt);

    let dir = tempfile::tempdir().expect("tempdir");
    let (gt, dets) = perfect(2, 3);
    prism_eval::write_ground_truth(dir.path().join("gt.json"), &gt).expect("write");
    prism_eval::write_detections(dir.path().join("dt.json"), &dets).expect("write");
    assert_eq!(
        prism_eval::load_ground_truth(dir.path().join("gt.json")).expect("load"),
        gt
    );
    assert_eq!(
        prism_eval::load_detections(dir.path().join("dt.json")).expect("load"),
        dets
    );
    let missing = prism_eval::load_ground_truth(dir.path().join("nope.json")).unwrap_err();
    assert!(
        matches!(missing, CocoError::Io { .. }) && missing.to_string().contains("nope.json"),
        "{missing}"
    );
}

fn gt_error(json: &str) -> String {
    CocoGt::from_json_slice(json.as_bytes(), "gt.json")
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_ground_truth_is_a_clear_error() {
    let wrap = |anns: &str| {
        format!(
            r#"{{"images": [{{"id": 1}}], "categories": [{{"id": 1, "name": "a"}}], "annotations": [{anns}]}}"#
        )
    };
    let e = gt_error("[1, 2]");
    assert!(
        e.contains("gt.json: not a valid COCO ground-truth file"),
        "{e}"
    );
    let e = gt_error(r#"{"images": [], "categories": [], "annotations": [{"id": 1}]}"#);
    assert!(e.contains("missing field"), "{e}");
    let e = gt_error(&wrap(
        r#"{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}"#,
    ));
    assert!(e.contains("not a valid COCO"), "{e}");
    let e = gt_error(&wrap(
        r#"{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]}"#,
    ));
    assert_eq!(e, "gt.json: annotation 1 refers to unknown image id 2");
    let e = gt_error(&wrap(
        r#"{"id": 1, "image_id": 1, "category_id": 9, "bbox": [1, 2, 3, 4]}"#,
    ));
    assert_eq!(e, "gt.json: annotation 1 refers to unknown category id 9");
    let e = gt_error(&wrap(
        r#"{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4]}"#,
    ));
    assert!(
        e.contains("annotation 1 has bbox [1.0, 2.0, -3.0, 4.0]"),
        "{e}"
    );
    let e = gt_error(&wrap(
        r#"{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": -1}"#,
    ));
    assert!(e.contains("annotation 1 has area = -1"), "{e}");
    let e = gt_error(&wrap(
        r#"{"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}, {"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}"#,
    ));
    assert_eq!(e, "gt.json: duplicate annotation id 4");
    let e = gt_error(r#"{"images": [{"id": 1}, {"id": 1}], "categories": []}"#);
    assert_eq!(e, "gt.json: duplicate image id 1");
    // JSON has no NaN; a literal NaN is a parse error.
    let e = gt_error(&wrap(
        r#"{"id": 1, "image_id": 1, "category_id": 1, "bbox": [NaN, 2, 3, 4]}"#,
    ));
    assert!(e.contains("not a valid COCO"), "{e}");
}

#[test]
fn malformed_detections_are_a_clear_error() {
    let e = detections_from_json_slice(br#"{"image_id": 1}"#, "dt.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dt.json: not a valid COCO detection file"),
        "{e}"
    );
    let e = detections_from_json_slice(
        br#"[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, -1], "score": 1}]"#,
        "dt.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("detection #0 has bbox"), "{e}");
    let (gt, _) = perfect(1, 1);
    let e = evaluate(&gt, &[det(1, 1, B, 0.5), det(5, 1, B, 0.5)]).unwrap_err();
    assert!(
        matches!(
            e,
            CocoError::UnknownDetectionImage {
                index: 1,
                image_id: 5,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("Results do not correspond to current coco set"),
        "{e}"
    );
    let e = evaluate(&gt, &[det(1, 1, B, f64::NAN)]).unwrap_err();
    assert!(
        e.to_string().contains("detection #0 has score = NaN"),
        "{e}"
    );
    // Writing refuses what JSON cannot hold.
    assert!(prism_eval::coco::detections_to_json(&[det(
        1,
        1,
        [f64::INFINITY, 0.0, 1.0, 1.0],
        0.5
    )])
    .is_err());
}

#[test]
fn iou_values() {
    let a = [10.0, 10.0, 20.0, 10.0];
    assert_eq!(iou(&a, &a, false), 1.0);
    assert_eq!(
        iou(&a, &[30.0, 10.0, 5.0, 5.0], false),
        0.0,
        "touching edges"
    );
    assert_eq!(iou(&a, &[20.0, 10.0, 20.0, 10.0], false), 100.0 / 300.0);
    assert_eq!(
        iou(&[20.0, 10.0, 20.0, 10.0], &a, true),
        0.5,
        "crowd: over the detection's area"
    );
    assert_eq!(iou(&a, &[10.0, 10.0, 0.0, 10.0], false), 0.0, "empty box");
}

#[test]
fn table_prints_the_pycocotools_summary() {
    let (gt, dets) = perfect(2, 1);
    let m = evaluate(&gt, &dets).expect("evaluate");
    let t = m.table(&["car"]);
    assert!(
        t.starts_with(
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000\n"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 1.000\n"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000\n"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 1.000\n"
        ),
        "{t}"
    );
    assert!(t.contains("\ncar "), "{t}");
    assert!(
        t.contains("\nclass2 "),
        "names from the ground truth where none given: {t}"
    );
    assert_eq!(t.lines().count(), 12 + 1 + 2);
    assert_eq!(STAT_NAMES[0], "AP");
    let json = serde_json::to_value(&m).expect("serialize");
    assert_eq!(json["per_class"][1]["name"], "class2");
}
