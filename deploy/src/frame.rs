//! [`FrameDetector`]: one `f32` NCHW tensor in, detections out (task `frame-detection`).
//!
//! Boxes come back in input pixels, clipped to the input size. Buffers are reused between calls.

use std::sync::Arc;

use prism_core::spec::Task;
use prism_core::Detection;

use crate::engine::{Engine, Tensor, TensorView};
use crate::error::{DeployError, Result};
use crate::postprocess::Postprocessor;

#[derive(Debug)]
pub struct FrameDetector {
    engine: Arc<Engine>,
    outputs: Vec<Tensor>,
    detections_index: usize,
    post: Postprocessor,
}

impl FrameDetector {
    /// A detector for `engine`'s model, which must be a `frame-detection` model without state.
    pub fn new(engine: Arc<Engine>) -> Result<Self> {
        let spec = engine.spec();
        if spec.task != Task::FrameDetection || !spec.state.is_empty() {
            return Err(DeployError::Task(format!(
                "{} is a {:?} model with {} state tensors; FrameDetector runs stateless frame-detection models (use StreamDetector)",
                spec.model,
                spec.task,
                spec.state.len()
            )));
        }
        let (h, w) = spec.input_hw().ok_or_else(|| {
            DeployError::BadSpec("the spec's input height and width must be static".into())
        })?;
        let post = Postprocessor::new(spec, 1.0, (w as f32, h as f32))?;
        let detections_index = engine
            .outputs()
            .iter()
            .position(|o| o.name == spec.output.name)
            .ok_or_else(|| {
                DeployError::BadSpec(format!("the graph has no output `{}`", spec.output.name))
            })?;
        Ok(Self {
            engine,
            outputs: Vec::new(),
            detections_index,
            post,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Detections for one image `[1, C, H, W]` (the spec's input shape).
    pub fn detect(&mut self, image: &[f32], shape: &[usize]) -> Result<&[Detection]> {
        if shape.first() != Some(&1) {
            return Err(DeployError::Input(format!(
                "FrameDetector takes one image (batch 1), got shape {shape:?}"
            )));
        }
        let name = &self.engine.spec().input.name;
        self.engine
            .run_into(&[TensorView::new(name, shape, image)], &mut self.outputs)?;
        self.post.run(&self.outputs[self.detections_index].data)
    }
}
