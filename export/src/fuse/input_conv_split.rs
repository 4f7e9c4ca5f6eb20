//! Input convolution split (off unless [`crate::ExportOptions::split_input_conv`] is set; the RVT
//! export sets it): a strided convolution reading a graph input whose channel count is above 16
//! and not a multiple of 16 (event histograms: 20 channels) becomes a convolution of the first 16k
//! channels plus a space-to-depth convolution of the rest, added. See the module documentation of
//! [`super`] for why.

use super::{attr, attr_int, Rewriter};
use crate::proto::{Attribute, AttributeValue};

impl Rewriter<'_> {
    /// Split a graph-input convolution with `16k + r` input channels (`0 < r < 16`, `k >= 1`)
    /// into a 16k-channel convolution and a space-to-depth convolution of the other r channels.
    pub(super) fn split_input_convs(&mut self) -> usize {
        const BLOCK: i64 = 16;
        let ix = self.index();
        let mut edits = Vec::new();
        for (ci, conv) in self.g.node.iter().enumerate() {
            if conv.op_type != "Conv" || !self.inputs.contains(&conv.input[0]) {
                continue;
            }
            if attr_int(conv, "group").unwrap_or(1) != 1 {
                continue;
            }
            if let Some(AttributeValue::String(p)) = attr(conv, "auto_pad") {
                if p != "NOTSET" {
                    continue;
                }
            }
            if let Some(AttributeValue::Ints(d)) = attr(conv, "dilations") {
                if d.iter().any(|d| *d != 1) {
                    continue;
                }
            }
            let Some((wd, w)) = self.f32_const(&ix, &conv.input[1]) else {
                continue;
            };
            let Some(xs) = self.shapes.get(&conv.input[0]) else {
                continue;
            };
            if wd.len() != 4 || xs.len() != 4 {
                continue;
            }
            let cin = wd[1];
            if cin <= BLOCK || cin % BLOCK == 0 || xs[1] != cin {
                continue;
            }
            let ints = |name: &str, default: i64, n: usize| match attr(conv, name) {
                Some(AttributeValue::Ints(v)) if v.len() == n => v.clone(),
                None => vec![default; n],
                _ => vec![],
            };
            let (strides, pads) = (ints("strides", 1, 2), ints("pads", 0, 4));
            if strides.len() != 2 || pads.len() != 4 {
                continue;
            }
            let axes: Option<Vec<SpaceToDepth>> = (0..2)
                .map(|a| SpaceToDepth::new(xs[2 + a], wd[2 + a], strides[a], pads[a], pads[2 + a]))
                .collect();
            let Some(axes) = axes else { continue };
            edits.push((ci, wd, w, [axes[0], axes[1]]));
        }
        let count = edits.len();
        // From the back, so that earlier indices stay valid while nodes are inserted.
        for (ci, wd, w, [ay, ax]) in edits.into_iter().rev() {
            let conv = self.g.node[ci].clone();
            let (o, cin, kh, kw) = (
                wd[0] as usize,
                wd[1] as usize,
                wd[2] as usize,
                wd[3] as usize,
            );
            let c0 = cin - cin % BLOCK as usize;
            let r = cin - c0;
            let x = conv.input[0].clone();
            let xname = x.clone();
            let doc = conv.doc_string.clone();
            let split_sizes = self.add_i64("conv_split_sizes", &[c0 as i64, r as i64]);
            let (x0, x1) = (
                self.fresh(&format!("{x}_part0")),
                self.fresh(&format!("{x}_part1")),
            );
            let mut nodes = vec![self.node(
                "Split",
                vec![x, split_sizes],
                &x0,
                vec![Attribute::int("axis", 1)],
                &doc,
            )];
            nodes[0].output.push(x1.clone());
            // The first 16k channels: the same convolution on fewer channels.
            let mut w0 = Vec::with_capacity(o * c0 * kh * kw);
            for oc in 0..o {
                let base = oc * cin * kh * kw;
                w0.extend_from_slice(&w[base..base + c0 * kh * kw]);
            }
            let w0 = self.add_f32(
                "conv_split_weight",
                vec![wd[0], c0 as i64, wd[2], wd[3]],
                &w0,
            );
            let mut inputs = vec![x0, w0];
            inputs.extend(conv.input.iter().skip(2).cloned());
            let y0 = self.fresh(&format!("{}_part0", conv.output[0]));
            nodes.push(self.node("Conv", inputs, &y0, conv.attribute.clone(), &doc));
            // The other r channels: space to depth by the stride, then a stride-1 convolution
            // whose taps are the original taps rearranged (zeros where a block position falls
            // outside the original kernel).
            // Two transposes that each move one axis, separated by a reshape: ONNX Runtime runs
            // these with its single-axis copies, about ten times faster than the one general
            // transpose [N, r, H/s, s, W/s, s] -> [N, r, s, s, H/s, W/s] (and does not merge them).
            let (sh, sw) = (ay.stride as usize, ax.stride as usize);
            let depth = r * sh * sw;
            let steps: [(&[i64], Option<&[i64]>); 3] = [
                (
                    &[0, r as i64, ay.blocks, ay.stride, ax.blocks, ax.stride],
                    Some(&[0, 1, 2, 3, 5, 4]),
                ),
                (
                    &[0, r as i64, ay.blocks, ay.stride * ax.stride, ax.blocks],
                    Some(&[0, 1, 3, 2, 4]),
                ),
                (&[0, depth as i64, ay.blocks, ax.blocks], None),
            ];
            let mut cur = x1;
            for (k, (shape, perm)) in steps.into_iter().enumerate() {
                let shape = self.add_i64("s2d_shape", shape);
                let reshaped = self.fresh(&format!("{xname}_s2d{k}"));
                nodes.push(self.node("Reshape", vec![cur, shape], &reshaped, vec![], &doc));
                cur = reshaped;
                if let Some(perm) = perm {
                    let moved = self.fresh(&format!("{xname}_s2d{k}t"));
                    let attrs = vec![Attribute::ints("perm", perm.iter().copied())];
                    nodes.push(self.node("Transpose", vec![cur], &moved, attrs, &doc));
                    cur = moved;
                }
            }
            let x1d = cur;
            let (kh2, kw2) = (ay.kernel() as usize, ax.kernel() as usize);
            let mut w1 = vec![0f32; o * depth * kh2 * kw2];
            for oc in 0..o {
                for c in 0..r {
                    for (sy, ky0) in (0..sh).map(|sy| (sy, sy as i64)) {
                        for (sx, kx0) in (0..sw).map(|sx| (sx, sx as i64)) {
                            for a in 0..kh2 {
                                for b in 0..kw2 {
                                    let (Some(ky), Some(kx)) = (ay.tap(a, ky0), ax.tap(b, kx0))
                                    else {
                                        continue;
                                    };
                                    let d = (c * sh + sy) * sw + sx;
                                    w1[((oc * depth + d) * kh2 + a) * kw2 + b] =
                                        w[((oc * cin + c0 + c) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                }
            }
            let w1 = self.add_f32(
                "conv_s2d_weight",
                vec![wd[0], depth as i64, kh2 as i64, kw2 as i64],
                &w1,
            );
            let y1 = self.fresh(&format!("{}_part1", conv.output[0]));
            let attrs = vec![
                Attribute::ints("strides", [1, 1]),
                Attribute::ints(
                    "pads",
                    [ay.pad_begin(), ax.pad_begin(), ay.pad_end(), ax.pad_end()],
                ),
                Attribute::ints("dilations", [1, 1]),
                Attribute::int("group", 1),
                Attribute::ints("kernel_shape", [kh2 as i64, kw2 as i64]),
            ];
            nodes.push(self.node("Conv", vec![x1d, w1], &y1, attrs, &doc));
            if let Some(s) = self.shapes.get(&conv.output[0]).cloned() {
                self.shapes.insert(y0.clone(), s.clone());
                self.shapes.insert(y1.clone(), s);
            }
            nodes.push(self.node("Add", vec![y0, y1], &conv.output[0], vec![], &doc));
            self.g.node.splice(ci..=ci, nodes);
        }
        count
    }
}

/// One spatial axis of a strided convolution rewritten as space-to-depth by the stride followed
/// by a stride-1 convolution over blocks: output `i` reads input rows `s*i - p + k'` for taps
/// `k' < kernel`, which lie in blocks `i + d` for `d` in `dmin..=dmax`.
#[derive(Debug, Clone, Copy)]
struct SpaceToDepth {
    stride: i64,
    /// Blocks along the axis (input length / stride).
    blocks: i64,
    pad: i64,
    taps: i64,
    dmin: i64,
    dmax: i64,
}

impl SpaceToDepth {
    /// `None` unless the stride is above 1, divides the input length, the output has one cell
    /// per block, and the block offsets straddle 0 (the new padding is not negative).
    fn new(len: i64, taps: i64, stride: i64, pad_begin: i64, pad_end: i64) -> Option<Self> {
        if stride < 2 || len <= 0 || len % stride != 0 {
            return None;
        }
        let blocks = len / stride;
        if (len + pad_begin + pad_end - taps) / stride + 1 != blocks
            || len + pad_begin + pad_end < taps
        {
            return None;
        }
        let dmin = (-pad_begin).div_euclid(stride);
        let dmax = (taps - 1 - pad_begin).div_euclid(stride);
        (dmin <= 0 && dmax >= 0).then_some(Self {
            stride,
            blocks,
            pad: pad_begin,
            taps,
            dmin,
            dmax,
        })
    }
    fn kernel(&self) -> i64 {
        self.dmax - self.dmin + 1
    }
    fn pad_begin(&self) -> i64 {
        -self.dmin
    }
    fn pad_end(&self) -> i64 {
        self.dmax
    }
    /// The original tap read by block position `a` of the new kernel at offset `offset` inside
    /// the block, if it is inside the original kernel.
    fn tap(&self, a: usize, offset: i64) -> Option<usize> {
        let k = self.stride * (a as i64 + self.dmin) + offset + self.pad;
        (0..self.taps).contains(&k).then_some(k as usize)
    }
}
