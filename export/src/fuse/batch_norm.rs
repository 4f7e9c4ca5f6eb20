//! Batch norm into conv: `BatchNormalization(Conv(x, W, b))` with constant statistics becomes
//! one `Conv` with rescaled weights and bias.

use std::collections::HashSet;

use super::{attr, Rewriter};
use crate::proto::AttributeValue;

impl Rewriter<'_> {
    /// `BatchNormalization(Conv(x))` -> `Conv(x)` with the normalization folded into the weights.
    pub(super) fn fold_batch_norms(&mut self) -> usize {
        let ix = self.index();
        let mut dead = HashSet::new();
        let mut edits = Vec::new();
        for (bi, bn) in self.g.node.iter().enumerate() {
            if bn.op_type != "BatchNormalization" || bn.output.len() != 1 || bn.input.len() != 5 {
                continue;
            }
            let x = &bn.input[0];
            let Some(&ci) = ix.producer.get(x) else {
                continue;
            };
            let conv = &self.g.node[ci];
            if conv.op_type != "Conv" || !self.single_use(&ix, x) {
                continue;
            }
            let Some((wd, w)) = self.f32_const(&ix, &conv.input[1]) else {
                continue;
            };
            let Some(&o) = wd.first() else { continue };
            let o = o as usize;
            let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
                Some(b) => match self.f32_const(&ix, b) {
                    Some((_, v)) if v.len() == o => v,
                    _ => continue,
                },
                None => vec![0.0; o],
            };
            let params: Option<Vec<Vec<f32>>> = bn.input[1..]
                .iter()
                .map(|p| {
                    self.f32_const(&ix, p)
                        .map(|(_, v)| v)
                        .filter(|v| v.len() == o)
                })
                .collect();
            let Some(params) = params else { continue };
            let eps = match attr(bn, "epsilon") {
                Some(AttributeValue::Float(e)) => f64::from(*e),
                _ => 1e-5,
            };
            let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
            let scale: Vec<f64> = (0..o)
                .map(|c| f64::from(gamma[c]) / (f64::from(var[c]) + eps).sqrt())
                .collect();
            let per = w.len() / o.max(1);
            let w2: Vec<f32> = w
                .iter()
                .enumerate()
                .map(|(i, v)| (f64::from(*v) * scale[i / per]) as f32)
                .collect();
            let b2: Vec<f32> = (0..o)
                .map(|c| {
                    ((f64::from(bias[c]) - f64::from(mean[c])) * scale[c] + f64::from(beta[c]))
                        as f32
                })
                .collect();
            edits.push((ci, wd, w2, b2, bn.output[0].clone()));
            dead.insert(bi);
        }
        let count = edits.len();
        for (ci, wd, w2, b2, out) in edits {
            let w = self.add_f32("conv_bn_weight", wd, &w2);
            let b = self.add_f32("conv_bn_bias", vec![b2.len() as i64], &b2);
            let conv = &mut self.g.node[ci];
            conv.input.truncate(2);
            conv.input[1] = w;
            conv.input.push(b);
            conv.output[0] = out;
        }
        self.remove_nodes(&dead);
        count
    }
}
