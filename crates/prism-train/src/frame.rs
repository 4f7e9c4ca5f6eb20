//! Training steps for frame detectors (the RGB + thermal + event detector of issue 15):
//! letterboxed, augmented images in a batch, the same YOLOX loss with SimOTA as RVT, AdamW with
//! global-norm clipping. The run loop around it (schedule, validation, checkpoints, resume, the
//! `prism train` config) is not built yet.

use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use prism_data::multimodal::{MmImage, PixelBox, MM_CHANNELS};
use prism_models::mm::MmDetector;

use crate::clip::clip_global_norm;
use crate::loss::YoloxLoss;
use crate::simota::GtBox;

/// One batch: images `[B, 5, H, W]` scaled to `[0, 1]`, and each image's boxes in its pixels.
#[derive(Debug)]
pub struct FrameBatch {
    pub images: Tensor<4>,
    pub targets: Vec<Vec<GtBox>>,
}

/// Stacks model-sized images (all of one size) and their boxes into a batch on `device`.
pub fn frame_batch(samples: &[(MmImage, Vec<PixelBox>)], device: &Device) -> FrameBatch {
    let (h, w) = samples
        .first()
        .map_or((0, 0), |(image, _)| (image.height, image.width));
    let mut pixels = Vec::with_capacity(samples.len() * MM_CHANNELS * h * w);
    let mut targets = Vec::with_capacity(samples.len());
    for (image, boxes) in samples {
        assert_eq!(
            (image.height, image.width),
            (h, w),
            "every image of a batch has the model's input size"
        );
        pixels.extend(image.chw.iter().map(|&v| f32::from(v) / 255.0));
        targets.push(
            boxes
                .iter()
                .map(|b| {
                    let [x1, y1, x2, y2] = b.corners;
                    GtBox {
                        cx: (x1 + x2) / 2.0,
                        cy: (y1 + y2) / 2.0,
                        w: x2 - x1,
                        h: y2 - y1,
                        class_id: b.class,
                    }
                })
                .collect(),
        );
    }
    let images = Tensor::from_data(
        TensorData::new(pixels, [samples.len(), MM_CHANNELS, h, w]),
        device,
    );
    FrameBatch { images, targets }
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameStep {
    /// `5 * iou + obj + cls`.
    pub loss: f32,
    pub iou: f32,
    pub obj: f32,
    pub cls: f32,
    pub num_fg: usize,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// The model, its optimizer and its loss; [`FrameTrainer::step`] trains on one batch.
pub struct FrameTrainer {
    model: Option<MmDetector>,
    optimizer: ModuleOptimizer,
    loss: YoloxLoss,
    grad_clip: f64,
}

impl std::fmt::Debug for FrameTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameTrainer")
            .field("grad_clip", &self.grad_clip)
            .finish_non_exhaustive()
    }
}

impl FrameTrainer {
    /// Trains `model` (on an autodiff device) at input size `[h, w]` for `num_classes`.
    pub fn new(
        model: MmDetector,
        input_hw: [usize; 2],
        num_classes: usize,
        weight_decay: f64,
        grad_clip: f64,
    ) -> Self {
        let strides = model.yolox_head.strides.clone();
        Self {
            model: Some(model),
            optimizer: AdamWConfig::new()
                .with_weight_decay(weight_decay as f32)
                .with_epsilon(1e-8)
                .init(),
            loss: YoloxLoss::new(input_hw, &strides, num_classes),
            grad_clip,
        }
    }

    /// The model as it stands.
    pub fn model(&self) -> &MmDetector {
        match &self.model {
            Some(m) => m,
            None => unreachable_model(),
        }
    }

    /// One optimisation step on `batch` at learning rate `lr`.
    pub fn step(&mut self, batch: &FrameBatch, lr: f64) -> FrameStep {
        let model = match self.model.take() {
            Some(m) => m,
            None => unreachable_model(),
        };
        let raw = model.forward(batch.images.clone());
        let out = self.loss.forward(raw, &batch.targets);
        let grads = out.total.backward();
        let mut grads = GradientsParams::from_grads(grads, &model);
        let grad_norm = clip_global_norm(&model, &mut grads, self.grad_clip);
        self.model = Some(self.optimizer.step(lr, model, grads));
        FrameStep {
            loss: out.iou + out.obj + out.cls,
            iou: out.iou,
            obj: out.obj,
            cls: out.cls,
            num_fg: out.num_fg,
            grad_norm,
        }
    }
}

#[cold]
fn unreachable_model() -> ! {
    // `step` puts the model back before returning; only a panic inside it could leave none.
    unreachable!("the trainer's model is taken only inside step")
}
