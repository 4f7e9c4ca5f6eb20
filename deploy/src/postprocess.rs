//! The detections output → [`Detection`]s in the caller's coordinates: YOLOX decoding (unless the
//! graph decodes), score threshold and class-aware NMS from prism-core, then scaling (× the
//! representation's downsampling) and clipping to the sensor or image.
//!
//! Buffers are reused, so steady-state post-processing allocates nothing.

use prism_core::detection::postprocess;
use prism_core::spec::ModelSpec;
use prism_core::yolox::decode_rows;
use prism_core::Detection;

use crate::error::{DeployError, Result};

#[derive(Debug, Clone)]
pub struct Postprocessor {
    row_len: usize,
    strides: Vec<usize>,
    input_hw: (usize, usize),
    decoded: bool,
    score_threshold: f32,
    nms_iou: f32,
    max_detections: usize,
    /// Box scale factor to the output coordinates and the clip size there.
    factor: f32,
    clip: (f32, f32),
    rows: Vec<f32>,
    scratch: Vec<Detection>,
    detections: Vec<Detection>,
}

impl Postprocessor {
    /// Boxes come out in input-pixel coordinates × `factor`, clipped to `clip` (width, height).
    pub fn new(spec: &ModelSpec, factor: f32, clip: (f32, f32)) -> Result<Self> {
        let input_hw = spec.input_hw().ok_or_else(|| {
            DeployError::BadSpec("the spec's input height and width must be static".into())
        })?;
        let p = spec.postprocess();
        Ok(Self {
            row_len: 5 + spec.classes.len(),
            strides: spec.output.strides.clone(),
            input_hw,
            decoded: spec.output.decoded,
            score_threshold: p.score_threshold,
            nms_iou: p.nms_iou,
            max_detections: p.max_detections,
            factor,
            clip,
            rows: Vec::new(),
            scratch: Vec::new(),
            detections: Vec::new(),
        })
    }

    /// Detections of one image from its output rows `[1, anchors, 5 + classes]` (flattened).
    pub fn run(&mut self, output: &[f32]) -> Result<&[Detection]> {
        let rows = &mut self.rows;
        rows.clear();
        rows.extend_from_slice(output);
        if !self.decoded {
            let (h, w) = self.input_hw;
            decode_rows(rows, self.row_len, &self.strides, [h, w])
                .map_err(|e| DeployError::Output(e.to_string()))?;
        } else if rows.len() % self.row_len != 0 {
            return Err(DeployError::Output(format!(
                "{} values are not rows of 5 + {} classes",
                rows.len(),
                self.row_len - 5
            )));
        }
        postprocess(
            rows,
            self.row_len,
            self.score_threshold,
            self.nms_iou,
            self.max_detections,
            &mut self.scratch,
            &mut self.detections,
        );
        let (w, h) = self.clip;
        for d in &mut self.detections {
            d.bbox = d.bbox.scaled_and_clipped(self.factor, w, h);
        }
        Ok(&self.detections)
    }

    /// The detections of the last [`Self::run`].
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_core::spec::{OutputSpec, Postprocess, Task, TensorSpec, SPEC_VERSION};

    fn spec(decoded: bool) -> ModelSpec {
        ModelSpec {
            spec_version: SPEC_VERSION,
            model: "t".into(),
            task: Task::FrameDetection,
            classes: vec!["a".into()],
            input: TensorSpec {
                name: "x".into(),
                shape: vec![Some(1), Some(3), Some(16), Some(16)],
            },
            representation: None,
            output: OutputSpec {
                name: "y".into(),
                strides: vec![8],
                decoded,
            },
            state: vec![],
            duration_input: None,
            postprocess: Some(Postprocess {
                score_threshold: 0.1,
                nms_iou: 0.5,
                max_detections: 10,
            }),
            sequence: None,
            precision: Default::default(),
            quantization: None,
        }
    }

    #[test]
    fn boxes_are_scaled_and_clipped() -> Result<()> {
        // Four decoded anchors; only the second scores.
        let mut rows = vec![0f32; 4 * 6];
        rows[6..12].copy_from_slice(&[14.0, 4.0, 8.0, 4.0, 0.9, 0.9]);
        let mut post = Postprocessor::new(&spec(true), 2.0, (30.0, 100.0))?;
        let d = post.run(&rows)?;
        assert_eq!(d.len(), 1);
        // (10, 2)-(18, 6) × 2 = (20, 4)-(36, 12), clipped at x = 30.
        let b = d[0].bbox;
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (20.0, 4.0, 30.0, 12.0));
        Ok(())
    }

    #[test]
    fn wrong_output_sizes_are_errors() -> Result<()> {
        let mut raw = Postprocessor::new(&spec(false), 1.0, (16.0, 16.0))?;
        assert!(matches!(raw.run(&[0.0; 18]), Err(DeployError::Output(_))));
        let mut decoded = Postprocessor::new(&spec(true), 1.0, (16.0, 16.0))?;
        assert!(matches!(
            decoded.run(&[0.0; 13]),
            Err(DeployError::Output(_))
        ));
        Ok(())
    }
}
