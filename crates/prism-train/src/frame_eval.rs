//! COCO evaluation of frame detectors on a multimodal split: every image letterboxed (no
//! augmentation) into the model, the raw outputs decoded, class-aware NMS, the boxes mapped back
//! to the image's pixels and scored with prism's COCO evaluator against the YOLO labels.
//!
//! The model is a closure from a batch of inputs to raw outputs, so the same protocol scores a
//! Burn model during training and an exported file in any engine.

use prism_core::detection::{postprocess, Detection};
use prism_core::yolox::{decode_rows, num_anchors};
use prism_data::multimodal::{Letterbox, MmFolder, MmImage, MmSample, YoloBox, MM_CHANNELS};
use prism_eval::coco::{
    evaluate, CocoAnnotation, CocoCategory, CocoDetection, CocoGt, CocoImage, CocoMetrics,
};

use crate::TrainError;

/// The strides of the YOLOX head on MiT's stages 2 to 4.
pub const FRAME_STRIDES: [usize; 3] = [8, 16, 32];

/// Post-processing of the evaluation (YOLOX's COCO protocol: keep nearly everything, NMS 0.65).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameEvalOptions {
    pub score_threshold: f32,
    pub nms_iou: f32,
    pub max_detections: usize,
    /// Images per forward pass.
    pub batch: usize,
}

impl Default for FrameEvalOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.001,
            nms_iou: 0.65,
            max_detections: 100,
            batch: 8,
        }
    }
}

/// The input tensor of one image: letterboxed into `[h, w]`, channels first, scaled to [0, 1].
pub fn frame_input(image: &MmImage, [h, w]: [usize; 2]) -> (Vec<f32>, Letterbox) {
    let placement = Letterbox::fit(image.width, image.height, [w, h], 1.0, [0.0, 0.0]);
    let boxed = placement.apply(image);
    let pixels = boxed.chw.iter().map(|&v| f32::from(v) / 255.0).collect();
    (pixels, placement)
}

/// Detections of one image from its raw model output `[A, 5 + K]`, in image pixels.
pub fn frame_detections(
    raw: &mut [f32],
    input_hw: [usize; 2],
    placement: &Letterbox,
    image_wh: [usize; 2],
    opts: &FrameEvalOptions,
) -> Result<Vec<Detection>, TrainError> {
    let anchors = num_anchors(input_hw, &FRAME_STRIDES);
    let row = raw.len() / anchors.max(1);
    decode_rows(raw, row, &FRAME_STRIDES, input_hw)
        .map_err(|e| TrainError::Splits(format!("model output: {e}")))?;
    let (mut scratch, mut kept) = (Vec::new(), Vec::new());
    postprocess(
        raw,
        row,
        opts.score_threshold,
        opts.nms_iou,
        opts.max_detections,
        &mut scratch,
        &mut kept,
    );
    let (iw, ih) = (image_wh[0] as f32, image_wh[1] as f32);
    Ok(kept
        .into_iter()
        .filter_map(|mut d| {
            let b = placement.to_image([d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2]);
            d.bbox.x1 = b[0].clamp(0.0, iw);
            d.bbox.y1 = b[1].clamp(0.0, ih);
            d.bbox.x2 = b[2].clamp(0.0, iw);
            d.bbox.y2 = b[3].clamp(0.0, ih);
            (d.bbox.width() > 0.0 && d.bbox.height() > 0.0).then_some(d)
        })
        .collect())
}

/// Scores `samples` of `folder` with `predict` (a batch `[n, 5, h, w]` of inputs -> raw
/// outputs `[n, A, 5 + K]`, flattened). `on_images` hears how many images are done.
pub fn evaluate_samples(
    folder: &MmFolder,
    samples: &[MmSample],
    input_hw: [usize; 2],
    opts: &FrameEvalOptions,
    mut predict: impl FnMut(Vec<f32>, usize) -> Result<Vec<f32>, TrainError>,
    mut on_images: impl FnMut(usize),
) -> Result<CocoMetrics, TrainError> {
    let mut gt = CocoGt {
        categories: folder
            .classes
            .iter()
            .enumerate()
            .map(|(i, name)| CocoCategory {
                id: i as i64,
                name: name.clone(),
                supercategory: None,
            })
            .collect(),
        ..CocoGt::default()
    };
    let mut dets = Vec::new();
    let [h, w] = input_hw;
    for (chunk_index, chunk) in samples.chunks(opts.batch.max(1)).enumerate() {
        let mut input = Vec::with_capacity(chunk.len() * MM_CHANNELS * h * w);
        let mut placed = Vec::with_capacity(chunk.len());
        for sample in chunk {
            let (image, boxes) = folder.load(sample)?;
            let (pixels, placement) = frame_input(&image, input_hw);
            input.extend(pixels);
            placed.push((placement, [image.width, image.height], boxes));
        }
        let mut raw = predict(input, chunk.len())?;
        let per_image = raw.len() / chunk.len().max(1);
        for (i, (placement, wh, boxes)) in placed.iter().enumerate() {
            let image_id = (chunk_index * opts.batch.max(1) + i) as i64 + 1;
            add_ground_truth(&mut gt, image_id, *wh, boxes);
            let image_raw = &mut raw[i * per_image..(i + 1) * per_image];
            for d in frame_detections(image_raw, input_hw, placement, *wh, opts)? {
                dets.push(CocoDetection {
                    image_id,
                    category_id: d.class_id as i64,
                    bbox: [
                        f64::from(d.bbox.x1),
                        f64::from(d.bbox.y1),
                        f64::from(d.bbox.width()),
                        f64::from(d.bbox.height()),
                    ],
                    score: f64::from(d.score),
                });
            }
        }
        on_images(chunk.len());
    }
    evaluate(&gt, &dets).map_err(|e| TrainError::Splits(format!("COCO evaluation: {e}")))
}

fn add_ground_truth(gt: &mut CocoGt, image_id: i64, [w, h]: [usize; 2], boxes: &[YoloBox]) {
    gt.images.push(CocoImage {
        id: image_id,
        width: Some(w as u32),
        height: Some(h as u32),
        file_name: None,
    });
    for b in boxes {
        let [x1, y1, x2, y2] = b.to_pixels(w, h);
        let (x1, y1) = (x1.max(0.0), y1.max(0.0));
        let (x2, y2) = (x2.min(w as f32), y2.min(h as f32));
        let (bw, bh) = (f64::from(x2 - x1), f64::from(y2 - y1));
        gt.annotations.push(CocoAnnotation {
            id: gt.annotations.len() as i64 + 1,
            image_id,
            category_id: b.class as i64,
            bbox: [f64::from(x1), f64::from(y1), bw, bh],
            area: bw * bh,
            iscrowd: false,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prism_data::multimodal::{synth_mm, SynthMmOptions};

    /// Raw outputs that decode to exactly the labelled boxes (logit 10 on the right class) at
    /// the anchor nearest each centre: the protocol must give AP 1.
    #[test]
    fn perfect_raw_outputs_score_ap_one_through_the_letterbox() {
        let dir = tempfile::tempdir().unwrap();
        synth_mm(
            dir.path(),
            &SynthMmOptions {
                images: 6,
                seed: 3,
                size: [100, 70],
                clutter: true,
            },
        )
        .unwrap();
        let folder = MmFolder::open(dir.path()).unwrap();
        let input_hw = [64, 96];
        let samples = folder.pool.samples.clone();
        let mut cursor = 0;
        let k = folder.classes.len();
        let metrics = evaluate_samples(
            &folder,
            &samples,
            input_hw,
            &FrameEvalOptions {
                batch: 4,
                ..FrameEvalOptions::default()
            },
            |_, n| {
                let anchors = prism_core::yolox::anchor_grid(input_hw, &FRAME_STRIDES);
                let mut out = vec![-10.0f32; n * anchors.len() * (5 + k)];
                for i in 0..n {
                    let (image, boxes) = folder.load(&samples[cursor + i]).unwrap();
                    let (_, placement) = frame_input(&image, input_hw);
                    for b in &boxes {
                        let m = placement.to_model(b.to_pixels(image.width, image.height));
                        let (cx, cy) = ((m[0] + m[2]) / 2.0, (m[1] + m[3]) / 2.0);
                        // The first stride-8 anchor holding the centre.
                        let (j, a) = anchors
                            .iter()
                            .enumerate()
                            .find(|(_, a)| {
                                a.stride == 8.0
                                    && (cx / 8.0).floor() == a.x
                                    && (cy / 8.0).floor() == a.y
                            })
                            .unwrap();
                        let r = &mut out[(i * anchors.len() + j) * (5 + k)..][..5 + k];
                        r[0] = cx / 8.0 - a.x;
                        r[1] = cy / 8.0 - a.y;
                        r[2] = ((m[2] - m[0]) / 8.0).ln();
                        r[3] = ((m[3] - m[1]) / 8.0).ln();
                        r[4] = 10.0;
                        r[5 + b.class] = 10.0;
                    }
                }
                cursor += n;
                Ok(out)
            },
            |_| {},
        )
        .unwrap();
        assert!(metrics.ap() > 0.99, "AP {}", metrics.ap());
    }
}
