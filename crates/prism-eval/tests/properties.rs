//! Property tests: the JSON loaders never panic, IoU behaves, evaluation is total on valid data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

use prism_eval::coco::iou::iou;
use prism_eval::coco::{detections_from_json_slice, evaluate, CocoDetection, CocoGt};
use proptest::prelude::*;

const VALID_GT: &str = r#"{"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "a"}],
 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1.5, 2, 30, 40], "area": 1200, "iscrowd": 0},
                 {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": true}]}"#;
const VALID_DT: &str = r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
 {"image_id": 2, "category_id": 1, "bbox": [0, 0, 3, 3], "score": 0.1}]"#;

fn coord() -> impl Strategy<Value = f64> {
    (-1000i32..1000).prop_map(|v| f64::from(v) / 4.0)
}

fn size() -> impl Strategy<Value = f64> {
    (0i32..400).prop_map(|v| f64::from(v) / 4.0)
}

fn bbox() -> impl Strategy<Value = [f64; 4]> {
    (coord(), coord(), size(), size()).prop_map(|(x, y, w, h)| [x, y, w, h])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn loaders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = CocoGt::from_json_slice(&bytes, "fuzz");
        let _ = detections_from_json_slice(&bytes, "fuzz");
    }

    #[test]
    fn loaders_never_panic_on_corrupted_files(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        for text in [VALID_GT, VALID_DT] {
            let mut bytes = text.as_bytes().to_vec();
            for (at, b) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *b;
            }
            let truncated = &bytes[..cut.index(bytes.len() + 1)];
            for candidate in [&bytes[..], truncated] {
                if let Ok(gt) = CocoGt::from_json_slice(candidate, "fuzz") {
                    let _ = evaluate(&gt, &[]);
                }
                if let Ok(dets) = detections_from_json_slice(candidate, "fuzz") {
                    if let Ok(gt) = CocoGt::from_json_slice(VALID_GT.as_bytes(), "gt") {
                        let _ = evaluate(&gt, &dets);
                    }
                }
            }
        }
    }

    #[test]
    fn iou_is_bounded_and_symmetric(a in bbox(), b in bbox()) {
        let v = iou(&a, &b, false);
        prop_assert!((0.0..=1.0).contains(&v), "iou {v}");
        prop_assert_eq!(v, iou(&b, &a, false));
        // Crowd: intersection over the detection's own area, never below the plain IoU.
        let c = iou(&a, &b, true);
        prop_assert!((0.0..=1.0).contains(&c) && c >= v, "crowd {c} plain {v}");
        if v > 0.0 {
            prop_assert!(a[2] > 0.0 && a[3] > 0.0 && b[2] > 0.0 && b[3] > 0.0);
        }
    }

    #[test]
    fn iou_of_a_box_with_itself_is_one_and_translation_invariant(
        a in bbox(), b in bbox(), dx in -100i32..100, dy in -100i32..100,
    ) {
        // Quarter-pixel coordinates: every operation is exact.
        if a[2] > 0.0 && a[3] > 0.0 {
            prop_assert_eq!(iou(&a, &a, false), 1.0);
            prop_assert_eq!(iou(&a, &a, true), 1.0);
        }
        let (dx, dy) = (f64::from(dx), f64::from(dy));
        let shift = |r: [f64; 4]| [r[0] + dx, r[1] + dy, r[2], r[3]];
        prop_assert_eq!(iou(&a, &b, false), iou(&shift(a), &shift(b), false));
    }

    #[test]
    fn evaluation_is_total_and_bounded(
        gts in proptest::collection::vec((0i64..3, 1i64..3, bbox(), any::<bool>()), 0..20),
        dts in proptest::collection::vec((0i64..3, 1i64..4, bbox(), 0u32..5), 0..40),
    ) {
        let mut gt = CocoGt {
            images: (0..3).map(|id| prism_eval::CocoImage { id, width: None, height: None, file_name: None }).collect(),
            categories: (1..3).map(|id| prism_eval::CocoCategory { id, name: String::new(), supercategory: None }).collect(),
            annotations: vec![],
        };
        for (i, (image_id, category_id, bbox, crowd)) in gts.into_iter().enumerate() {
            gt.annotations.push(prism_eval::CocoAnnotation {
                id: i as i64 + 1, image_id, category_id, bbox, area: bbox[2] * bbox[3], iscrowd: crowd && i % 3 == 0,
            });
        }
        let dets: Vec<CocoDetection> = dts
            .into_iter()
            .map(|(image_id, category_id, bbox, s)| CocoDetection { image_id, category_id, bbox, score: f64::from(s) / 4.0 })
            .collect();
        let m = evaluate(&gt, &dets).expect("valid input evaluates");
        for v in m.stats.iter().chain(m.per_class.iter().flat_map(|c| [&c.ap, &c.ap50])) {
            prop_assert!(*v == -1.0 || (0.0..=1.0).contains(v), "value {v}");
        }
    }
}
