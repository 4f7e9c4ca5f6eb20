//! The YOLOX training loss (RVT's `YOLOXHead.get_losses`, L1 term off):
//! `5 * IoU loss + objectness BCE + class BCE`, each summed and divided by the number of
//! positive anchors, with targets from [SimOTA](crate::simota).

use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use prism_core::yolox::{anchor_grid, Anchor};
use prism_models::rvt::decode_boxes;

use crate::simota::{self, GtBox, ImagePredictions};

/// Weight of the IoU term (`reg_weight` in the reference).
pub const REG_WEIGHT: f32 = 5.0;

/// The loss of one batch: the tensor to differentiate and its parts as numbers for logging.
#[derive(Debug)]
pub struct LossOutput {
    /// `5 * iou + obj + cls`, shape `[1]`.
    pub total: Tensor<1>,
    /// `5 * iou` part (as the reference logs it).
    pub iou: f32,
    pub obj: f32,
    pub cls: f32,
    /// Positive anchors over the batch.
    pub num_fg: usize,
    /// Ground-truth boxes over the batch.
    pub num_gt: usize,
}

/// The YOLOX loss for one input size: anchor grid and strides are fixed.
#[derive(Debug, Clone)]
pub struct YoloxLoss {
    anchors: Vec<Anchor>,
    num_classes: usize,
}

/// `BCEWithLogits(x, z)` element-wise, in the numerically stable form PyTorch uses.
pub fn bce_with_logits<const D: usize>(logits: Tensor<D>, targets: Tensor<D>) -> Tensor<D> {
    let softplus_neg_abs = logits.clone().abs().neg().exp().log1p();
    relu(logits.clone()) - logits * targets + softplus_neg_abs
}

/// `1 - IoU^2` per row of two `[M, 4]` `(cx, cy, w, h)` tensors (YOLOX `IOUloss`, type "iou").
pub fn iou_loss(pred: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let [m, _] = pred.dims();
    let p_c = pred.clone().narrow(1, 0, 2);
    let p_wh = pred.narrow(1, 2, 2);
    let t_c = target.clone().narrow(1, 0, 2);
    let t_wh = target.narrow(1, 2, 2);
    let tl = (p_c.clone() - p_wh.clone() / 2.0).max_pair(t_c.clone() - t_wh.clone() / 2.0);
    let br = (p_c + p_wh.clone() / 2.0).min_pair(t_c + t_wh.clone() / 2.0);
    let area_p = p_wh.prod_dim(1);
    let area_g = t_wh.prod_dim(1);
    let area_i = (br - tl).clamp_min(0.0).prod_dim(1);
    let union = area_p + area_g - area_i.clone();
    let iou = area_i / (union + 1e-16);
    (iou.square().neg() + 1.0).reshape([m])
}

impl YoloxLoss {
    /// Loss for padded input `input_hw` and a head with levels at `strides`.
    pub fn new(input_hw: [usize; 2], strides: &[usize], num_classes: usize) -> Self {
        Self {
            anchors: anchor_grid(input_hw, strides),
            num_classes,
        }
    }

    /// Number of anchors the head outputs for this input size.
    pub fn num_anchors(&self) -> usize {
        self.anchors.len()
    }

    /// Decodes the box part of raw outputs `[N, A, 5 + K]` into `(cx, cy, w, h)` pixels
    /// `[N, A, 4]` on the loss's grid ([`decode_boxes`], differentiable).
    pub fn decode_boxes(&self, raw: Tensor<3>) -> Tensor<3> {
        decode_boxes(raw, &self.anchors)
    }

    /// Loss of raw head outputs `[N, A, 5 + K]` against the ground truth of each of the N
    /// images (boxes in input pixels).
    pub fn forward(&self, raw: Tensor<3>, targets: &[Vec<GtBox>]) -> LossOutput {
        let [n, a, c] = raw.dims();
        let k = self.num_classes;
        assert_eq!(
            a,
            self.anchors.len(),
            "raw output has {a} anchors, the loss expects {}",
            self.anchors.len()
        );
        assert_eq!(c, 5 + k, "raw output has {c} channels, expected 5 + {k}");
        assert_eq!(
            targets.len(),
            n,
            "{} target lists for a batch of {n}",
            targets.len()
        );
        let device: Device = raw.device();

        let boxes = self.decode_boxes(raw.clone());
        // Assignment on detached values.
        let boxes_host: Vec<f32> = boxes
            .clone()
            .detach()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let raw_host: Vec<f32> = raw
            .clone()
            .detach()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let mut fg_index: Vec<i64> = Vec::new();
        let mut reg_targets: Vec<f32> = Vec::new();
        let mut cls_targets: Vec<f32> = Vec::new();
        let mut obj_targets = vec![0.0f32; n * a];
        let mut num_gt = 0;
        let mut image_boxes = vec![[0.0f32; 4]; a];
        let mut obj_logits = vec![0.0f32; a];
        let mut cls_logits = vec![0.0f32; a * k];
        for (i, gts) in targets.iter().enumerate() {
            num_gt += gts.len();
            if gts.is_empty() {
                continue;
            }
            for j in 0..a {
                let b = (i * a + j) * 4;
                image_boxes[j] = [
                    boxes_host[b],
                    boxes_host[b + 1],
                    boxes_host[b + 2],
                    boxes_host[b + 3],
                ];
                let r = (i * a + j) * c;
                obj_logits[j] = raw_host[r + 4];
                cls_logits[j * k..(j + 1) * k].copy_from_slice(&raw_host[r + 5..r + 5 + k]);
            }
            let preds = ImagePredictions {
                boxes: &image_boxes,
                obj_logits: &obj_logits,
                cls_logits: &cls_logits,
                num_classes: k,
            };
            for p in simota::assign(&self.anchors, &preds, gts) {
                let gt = gts[p.gt];
                fg_index.push((i * a + p.anchor) as i64);
                reg_targets.extend_from_slice(&[gt.cx, gt.cy, gt.w, gt.h]);
                cls_targets.extend((0..k).map(|cl| if cl == gt.class_id { p.iou } else { 0.0 }));
                obj_targets[i * a + p.anchor] = 1.0;
            }
        }
        let num_fg = fg_index.len();
        let norm = num_fg.max(1) as f32;

        let obj_logits_t = raw.clone().narrow(2, 4, 1).reshape([n * a]);
        let obj_targets_t = Tensor::<1>::from_data(TensorData::new(obj_targets, [n * a]), &device);
        let loss_obj = bce_with_logits(obj_logits_t, obj_targets_t).sum() / norm;

        let (loss_iou, loss_cls) = if num_fg == 0 {
            let zero = Tensor::<1>::zeros([1], &device);
            (zero.clone(), zero)
        } else {
            let index = Tensor::<1, Int>::from_data(TensorData::new(fg_index, [num_fg]), &device);
            let fg_boxes = boxes.reshape([n * a, 4]).select(0, index.clone());
            let reg_t = Tensor::<2>::from_data(TensorData::new(reg_targets, [num_fg, 4]), &device);
            let loss_iou = iou_loss(fg_boxes, reg_t).sum() / norm;
            let fg_cls = raw.narrow(2, 5, k).reshape([n * a, k]).select(0, index);
            let cls_t = Tensor::<2>::from_data(TensorData::new(cls_targets, [num_fg, k]), &device);
            let loss_cls = bce_with_logits(fg_cls, cls_t).sum() / norm;
            (loss_iou, loss_cls)
        };
        let iou_part = loss_iou * REG_WEIGHT;
        let scalar = |t: &Tensor<1>| t.clone().detach().into_scalar::<f32>();
        let (iou, obj, cls) = (scalar(&iou_part), scalar(&loss_obj), scalar(&loss_cls));
        LossOutput {
            total: iou_part + loss_obj + loss_cls,
            iou,
            obj,
            cls,
            num_fg,
            num_gt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t1(v: &[f32]) -> Tensor<1> {
        Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex())
    }

    fn host(t: Tensor<1>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default()
    }

    #[test]
    fn bce_with_logits_matches_the_formula_and_is_stable() {
        let x = [-200.0f32, -3.0, 0.0, 2.5, 200.0];
        let z = [0.0f32, 1.0, 0.5, 0.0, 1.0];
        let got = host(bce_with_logits(t1(&x), t1(&z)));
        for i in 0..x.len() {
            let p = 1.0 / (1.0 + (-(x[i] as f64)).exp());
            let want = if i == 0 || i == 4 {
                0.0
            } else {
                -(z[i] as f64 * p.ln() + (1.0 - z[i] as f64) * (1.0 - p).ln())
            };
            assert!(
                (got[i] as f64 - want).abs() < 1e-5,
                "{i}: {} vs {want}",
                got[i]
            );
        }
    }

    #[test]
    fn iou_loss_of_known_pairs() {
        let d = Device::flex();
        let p = Tensor::<2>::from_data(
            TensorData::new(
                vec![
                    5.0f32, 5.0, 10.0, 10.0, 5.0, 5.0, 10.0, 10.0, 0.0, 0.0, 2.0, 2.0,
                ],
                [3, 4],
            ),
            &d,
        );
        let t = Tensor::<2>::from_data(
            TensorData::new(
                vec![
                    5.0f32, 5.0, 10.0, 10.0, 10.0, 5.0, 10.0, 10.0, 9.0, 9.0, 2.0, 2.0,
                ],
                [3, 4],
            ),
            &d,
        );
        let got = host(iou_loss(p, t));
        let want = [0.0, 1.0 - (1.0f32 / 3.0).powi(2), 1.0];
        for i in 0..3 {
            assert!((got[i] - want[i]).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn a_batch_without_objects_only_pushes_objectness_down() {
        let loss = YoloxLoss::new([32, 32], &[8, 16, 32], 2);
        let a = loss.num_anchors();
        let raw = Tensor::<3>::zeros([2, a, 7], &Device::flex());
        let out = loss.forward(raw, &[vec![], vec![]]);
        assert_eq!(out.num_fg, 0);
        assert_eq!(out.iou, 0.0);
        assert_eq!(out.cls, 0.0);
        // BCE(0 logit, 0 target) = ln 2 per anchor, divided by max(num_fg, 1) = 1.
        assert!(
            (out.obj - 2.0 * a as f32 * std::f32::consts::LN_2).abs() < 1e-2,
            "{}",
            out.obj
        );
    }

    #[test]
    fn gradients_flow_to_the_raw_outputs() {
        let device = Device::flex().autodiff();
        let loss = YoloxLoss::new([32, 64], &[8, 16, 32], 2);
        let a = loss.num_anchors();
        let raw = Tensor::<3>::zeros([1, a, 7], &device).require_grad();
        let gts = vec![vec![GtBox {
            cx: 20.0,
            cy: 16.0,
            w: 12.0,
            h: 10.0,
            class_id: 1,
        }]];
        let out = loss.forward(raw.clone(), &gts);
        assert!(out.num_fg >= 1);
        assert!(out.iou > 0.0 && out.cls > 0.0);
        let grads = out.total.backward();
        let g = raw.grad(&grads).map(|g| {
            g.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default()
        });
        let g = g.unwrap_or_default();
        assert_eq!(g.len(), a * 7);
        assert!(g.iter().all(|v| v.is_finite()));
        assert!(g.iter().any(|v| *v != 0.0));
    }
}
