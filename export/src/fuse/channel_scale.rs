//! Channel scales into linear layers: `Mul(Add(MatMul(x, W), b), g)` with a per-channel constant
//! `g` (LayerScale), possibly through reshapes and transposes that keep the last axis, becomes
//! `Add(MatMul(x, W * g), b * g)`.

use std::collections::HashSet;

use super::{attr, leading_ones, Index, Rewriter};
use crate::proto::AttributeValue;

impl Rewriter<'_> {
    /// `Mul(Add(MatMul(x, W), b), g)` -> `Add(MatMul(x, W * g), b * g)` for a per-channel `g`.
    pub(super) fn fold_channel_scales(&mut self) -> usize {
        let mut count = 0;
        // One fold per index build: folds may share nodes' neighbourhoods.
        loop {
            let ix = self.index();
            let Some(plan) = self.find_channel_scale(&ix) else {
                break;
            };
            let (mul, last, matmul, w_slot, w, wd, bias, g) = plan;
            let c = g.len();
            let w2: Vec<f32> = w.iter().enumerate().map(|(i, v)| v * g[i % c]).collect();
            let w_name = self.add_f32("linear_scaled_weight", wd, &w2);
            self.g.node[matmul].input[w_slot] = w_name;
            if let Some((add, b_slot, b, bd)) = bias {
                let b2: Vec<f32> = b.iter().zip(&g).map(|(v, s)| v * s).collect();
                let b_name = self.add_f32("linear_scaled_bias", bd, &b2);
                self.g.node[add].input[b_slot] = b_name;
            }
            let out = self.g.node[mul].output[0].clone();
            self.g.node[last].output[0] = out;
            self.remove_nodes(&HashSet::from([mul]));
            count += 1;
        }
        count
    }

    #[allow(clippy::type_complexity)]
    fn find_channel_scale(
        &self,
        ix: &Index,
    ) -> Option<(
        usize,
        usize,
        usize,
        usize,
        Vec<f32>,
        Vec<i64>,
        Option<(usize, usize, Vec<f32>, Vec<i64>)>,
        Vec<f32>,
    )> {
        for (mi, m) in self.g.node.iter().enumerate() {
            if m.op_type != "Mul" || m.input.len() != 2 {
                continue;
            }
            for slot in 0..2 {
                let Some((gd, g)) = self.f32_const(ix, &m.input[slot]) else {
                    continue;
                };
                let x = &m.input[1 - slot];
                let c = g.len();
                if c < 2 || !leading_ones(&gd, 1) || gd.last() != Some(&(c as i64)) {
                    continue;
                }
                // The scale must not add axes to x.
                let Some(xs) = self.shapes.get(x) else {
                    continue;
                };
                if xs.len() < gd.len() || xs.last() != Some(&(c as i64)) {
                    continue;
                }
                // Walk back through layout operations that keep the last axis.
                let mut cur = x.clone();
                let Some(&last) = ix.producer.get(&cur) else {
                    continue;
                };
                let found = loop {
                    if !self.single_use(ix, &cur) {
                        break None;
                    }
                    let Some(&pi) = ix.producer.get(&cur) else {
                        break None;
                    };
                    let p = &self.g.node[pi];
                    match p.op_type.as_str() {
                        "Transpose" => {
                            let Some(AttributeValue::Ints(perm)) = attr(p, "perm") else {
                                break None;
                            };
                            if perm.last().copied() != Some(perm.len() as i64 - 1) {
                                break None;
                            }
                            cur = p.input[0].clone();
                        }
                        "Reshape" => {
                            let keeps = |v: &str| {
                                self.shapes.get(v).and_then(|s| s.last().copied()) == Some(c as i64)
                            };
                            if !keeps(&p.input[0]) || !keeps(&p.output[0]) {
                                break None;
                            }
                            cur = p.input[0].clone();
                        }
                        "Add" | "MatMul" => break Some(pi),
                        _ => break None,
                    }
                };
                let Some(pi) = found else { continue };
                let p = &self.g.node[pi];
                // Optional bias: Add(MatMul(..), b) with b of C elements on the last axis.
                let (matmul_value, bias) = if p.op_type == "Add" {
                    let mut hit = None;
                    for b_slot in 0..2 {
                        let Some((bd, b)) = self.f32_const(ix, &p.input[b_slot]) else {
                            continue;
                        };
                        if b.len() == c && leading_ones(&bd, 1) && bd.last() == Some(&(c as i64)) {
                            hit = Some((p.input[1 - b_slot].clone(), Some((pi, b_slot, b, bd))));
                        }
                    }
                    match hit {
                        Some(h) => h,
                        None => continue,
                    }
                } else {
                    (p.output[0].clone(), None)
                };
                let mi2 = if bias.is_some() {
                    if !self.single_use(ix, &matmul_value) {
                        continue;
                    }
                    let Some(&k) = ix.producer.get(&matmul_value) else {
                        continue;
                    };
                    k
                } else {
                    pi
                };
                let mm = &self.g.node[mi2];
                if mm.op_type != "MatMul" {
                    continue;
                }
                let Some((wd, w)) = self.f32_const(ix, &mm.input[1]) else {
                    continue;
                };
                if wd.len() != 2 || wd[1] != c as i64 {
                    continue;
                }
                return Some((mi, last, mi2, 1, w, wd, bias, g));
            }
        }
        None
    }
}
