//! Module operations: linear, convolutions, pooling, normalization, interpolation, attention,
//! embedding.

use burn::backend::ir::{
    AdaptiveAvgPool1dOpIr, AdaptiveAvgPool2dOpIr, AttentionOpIr, InterpolateModeIr,
    InterpolateOpIr, ModuleOperationIr, ScalarIr, TensorIr,
};

use super::{scalar_f64, Lowerer};
use crate::error::{ExportError, Result};
use crate::proto::Attribute;

fn ints<const N: usize>(name: &str, v: [usize; N]) -> Attribute {
    Attribute::ints(name, v.iter().map(|x| *x as i64))
}

impl Lowerer {
    pub(super) fn module(&mut self, op: &ModuleOperationIr) -> Result<()> {
        use ModuleOperationIr as M;
        match op {
            M::Linear(l) => {
                let x = self.input(&l.x)?;
                let w = self.input(&l.weight)?;
                let b = l.bias.as_ref().map(|b| self.input(b)).transpose()?;
                if l.x.shape.len() == 2 {
                    let mut inputs = vec![x, w];
                    inputs.extend(b);
                    self.emit("Gemm", inputs, &l.out, vec![]);
                } else if let Some(b) = b {
                    let y = self.tmp("MatMul", vec![x, w], vec![]);
                    self.emit("Add", vec![y, b], &l.out, vec![]);
                } else {
                    self.emit("MatMul", vec![x, w], &l.out, vec![]);
                }
                Ok(())
            }
            M::Conv1d(c) => {
                let o = &c.options;
                let attrs = vec![
                    ints("strides", o.stride),
                    Attribute::ints("pads", [o.padding[0].0 as i64, o.padding[0].1 as i64]),
                    ints("dilations", o.dilation),
                    Attribute::int("group", o.groups as i64),
                ];
                self.conv("Conv", &c.x, &c.weight, c.bias.as_ref(), &c.out, attrs)
            }
            M::Conv2d(c) => {
                let o = &c.options;
                let p = o.padding;
                let attrs = vec![
                    ints("strides", o.stride),
                    Attribute::ints("pads", [p[0].0, p[1].0, p[0].1, p[1].1].map(|v| v as i64)),
                    ints("dilations", o.dilation),
                    Attribute::int("group", o.groups as i64),
                ];
                self.conv("Conv", &c.x, &c.weight, c.bias.as_ref(), &c.out, attrs)
            }
            M::Conv3d(c) => {
                let o = &c.options;
                let p = o.padding;
                let attrs = vec![
                    ints("strides", o.stride),
                    Attribute::ints(
                        "pads",
                        [p[0], p[1], p[2], p[0], p[1], p[2]].map(|v| v as i64),
                    ),
                    ints("dilations", o.dilation),
                    Attribute::int("group", o.groups as i64),
                ];
                self.conv("Conv", &c.x, &c.weight, c.bias.as_ref(), &c.out, attrs)
            }
            M::ConvTranspose1d(c) => {
                let o = &c.options;
                let p = o.padding[0] as i64;
                let attrs = vec![
                    ints("strides", o.stride),
                    Attribute::ints("pads", [p, p]),
                    ints("output_padding", o.padding_out),
                    ints("dilations", o.dilation),
                    Attribute::int("group", o.groups as i64),
                ];
                self.conv(
                    "ConvTranspose",
                    &c.x,
                    &c.weight,
                    c.bias.as_ref(),
                    &c.out,
                    attrs,
                )
            }
            M::ConvTranspose2d(c) => {
                let o = &c.options;
                let p = o.padding;
                let attrs = vec![
                    ints("strides", o.stride),
                    Attribute::ints("pads", [p[0], p[1], p[0], p[1]].map(|v| v as i64)),
                    ints("output_padding", o.padding_out),
                    ints("dilations", o.dilation),
                    Attribute::int("group", o.groups as i64),
                ];
                self.conv(
                    "ConvTranspose",
                    &c.x,
                    &c.weight,
                    c.bias.as_ref(),
                    &c.out,
                    attrs,
                )
            }
            M::ConvTranspose3d(c) => {
                let o = &c.options;
                let p = o.padding;
                let attrs = vec![
                    ints("strides", o.stride),
                    Attribute::ints(
                        "pads",
                        [p[0], p[1], p[2], p[0], p[1], p[2]].map(|v| v as i64),
                    ),
                    ints("output_padding", o.padding_out),
                    ints("dilations", o.dilation),
                    Attribute::int("group", o.groups as i64),
                ];
                self.conv(
                    "ConvTranspose",
                    &c.x,
                    &c.weight,
                    c.bias.as_ref(),
                    &c.out,
                    attrs,
                )
            }
            M::AvgPool1d(p) => {
                let attrs = vec![
                    Attribute::ints("kernel_shape", [p.kernel_size as i64]),
                    Attribute::ints("strides", [p.stride as i64]),
                    Attribute::ints("pads", [p.padding as i64, p.padding as i64]),
                    Attribute::int("count_include_pad", i64::from(p.count_include_pad)),
                    Attribute::int("ceil_mode", i64::from(p.ceil_mode)),
                ];
                let x = self.input(&p.x)?;
                self.emit("AveragePool", vec![x], &p.out, attrs);
                Ok(())
            }
            M::AvgPool2d(p) => {
                let pad = p.padding;
                let attrs = vec![
                    ints("kernel_shape", p.kernel_size),
                    ints("strides", p.stride),
                    Attribute::ints("pads", [pad[0], pad[1], pad[0], pad[1]].map(|v| v as i64)),
                    Attribute::int("count_include_pad", i64::from(p.count_include_pad)),
                    Attribute::int("ceil_mode", i64::from(p.ceil_mode)),
                ];
                let x = self.input(&p.x)?;
                self.emit("AveragePool", vec![x], &p.out, attrs);
                Ok(())
            }
            M::MaxPool1d(p) => {
                let attrs = vec![
                    Attribute::ints("kernel_shape", [p.kernel_size as i64]),
                    Attribute::ints("strides", [p.stride as i64]),
                    Attribute::ints("pads", [p.padding as i64, p.padding as i64]),
                    Attribute::ints("dilations", [p.dilation as i64]),
                    Attribute::int("ceil_mode", i64::from(p.ceil_mode)),
                ];
                let x = self.input(&p.x)?;
                self.emit("MaxPool", vec![x], &p.out, attrs);
                Ok(())
            }
            M::MaxPool2d(p) => {
                let pad = p.padding;
                let attrs = vec![
                    ints("kernel_shape", p.kernel_size),
                    ints("strides", p.stride),
                    Attribute::ints("pads", [pad[0], pad[1], pad[0], pad[1]].map(|v| v as i64)),
                    ints("dilations", p.dilation),
                    Attribute::int("ceil_mode", i64::from(p.ceil_mode)),
                ];
                let x = self.input(&p.x)?;
                self.emit("MaxPool", vec![x], &p.out, attrs);
                Ok(())
            }
            M::AdaptiveAvgPool1d(p) => self.adaptive_avg_pool1d(p),
            M::AdaptiveAvgPool2d(p) => self.adaptive_avg_pool2d(p),
            M::BatchNorm(b) => {
                let inputs = vec![
                    self.input(&b.x)?,
                    self.input(&b.gamma)?,
                    self.input(&b.beta)?,
                    self.input(&b.mean)?,
                    self.input(&b.variance)?,
                ];
                let eps = scalar_f64(b.epsilon) as f32;
                self.emit(
                    "BatchNormalization",
                    inputs,
                    &b.out,
                    vec![Attribute::float("epsilon", eps)],
                );
                Ok(())
            }
            M::LayerNorm(l) => {
                let mut inputs = vec![self.input(&l.input)?, self.input(&l.gamma)?];
                if let Some(beta) = &l.beta {
                    inputs.push(self.input(beta)?);
                }
                let attrs = vec![
                    Attribute::int("axis", -1),
                    Attribute::float("epsilon", scalar_f64(l.epsilon) as f32),
                ];
                if self.opset >= 17 {
                    self.emit("LayerNormalization", inputs, &l.out, attrs);
                } else {
                    self.layer_norm_primitives(inputs, l)?;
                }
                Ok(())
            }
            M::Interpolate(i) => self.interpolate(i),
            M::Attention(a) => self.attention(a),
            M::Embedding(e) => {
                let w = self.input(&e.weights)?;
                let i = self.input(&e.indices)?;
                self.emit(
                    "Gather",
                    vec![w, i],
                    &e.out,
                    vec![Attribute::int("axis", 0)],
                );
                Ok(())
            }
            M::MaxPool1dWithIndices(_) | M::MaxPool2dWithIndices(_) => {
                Err(self.unsupported("max pooling with indices is not lowered yet"))
            }
            M::AdaptiveAvgPool3d(_) => {
                Err(self.unsupported("3-D adaptive pooling is not lowered yet"))
            }
            M::DeformableConv2d(_) => {
                Err(self.unsupported("deformable convolution has no ONNX operator"))
            }
            M::Unfold4d(_) => Err(self.unsupported("unfold4d is not lowered yet")),
            M::CtcLoss(_) => Err(self.unsupported("losses are not exported")),
            _ => Err(self.unsupported("training-only (backward) operation")),
        }
    }

    fn conv(
        &mut self,
        op_type: &str,
        x: &TensorIr,
        w: &TensorIr,
        b: Option<&TensorIr>,
        out: &TensorIr,
        mut attrs: Vec<Attribute>,
    ) -> Result<()> {
        let mut inputs = vec![self.input(x)?, self.input(w)?];
        if let Some(b) = b {
            inputs.push(self.input(b)?);
        }
        attrs.push(Attribute::ints(
            "kernel_shape",
            w.shape[2..].iter().map(|d| *d as i64),
        ));
        self.emit(op_type, inputs, out, attrs);
        Ok(())
    }

    fn layer_norm_primitives(
        &mut self,
        inputs: Vec<String>,
        l: &burn::backend::ir::LayerNormOpIr,
    ) -> Result<()> {
        let x = inputs[0].clone();
        let mean = self.reduce_node("ReduceMean", x.clone(), Some(&[-1]), true)?;
        let d = self.tmp("Sub", vec![x, mean], vec![]);
        let sq = self.tmp("Mul", vec![d.clone(), d.clone()], vec![]);
        let var = self.reduce_node("ReduceMean", sq, Some(&[-1]), true)?;
        let eps = self.scalar(l.epsilon, l.input.dtype)?;
        let v = self.tmp("Add", vec![var, eps], vec![]);
        let s = self.tmp("Sqrt", vec![v], vec![]);
        let n = self.tmp("Div", vec![d, s], vec![]);
        if inputs.len() == 3 {
            let g = self.tmp("Mul", vec![n, inputs[1].clone()], vec![]);
            self.emit("Add", vec![g, inputs[2].clone()], &l.out, vec![]);
        } else {
            self.emit("Mul", vec![n, inputs[1].clone()], &l.out, vec![]);
        }
        Ok(())
    }

    fn adaptive_avg_pool1d(&mut self, p: &AdaptiveAvgPool1dOpIr) -> Result<()> {
        let x = self.input(&p.x)?;
        let len = p.x.shape[2];
        let y = self.adaptive_axis(x, 2, len, p.output_size)?;
        self.alias(&p.out, y);
        Ok(())
    }

    fn adaptive_avg_pool2d(&mut self, p: &AdaptiveAvgPool2dOpIr) -> Result<()> {
        let x = self.input(&p.x)?;
        let (h, w) = (p.x.shape[2], p.x.shape[3]);
        let [oh, ow] = p.output_size;
        if oh == 1 && ow == 1 {
            self.emit("GlobalAveragePool", vec![x], &p.out, vec![]);
            return Ok(());
        }
        if h % oh == 0 && w % ow == 0 {
            let k = [(h / oh) as i64, (w / ow) as i64];
            let attrs = vec![
                Attribute::ints("kernel_shape", k),
                Attribute::ints("strides", k),
            ];
            self.emit("AveragePool", vec![x], &p.out, attrs);
            return Ok(());
        }
        let y = self.adaptive_axis(x, 2, h, oh)?;
        let y = self.adaptive_axis(y, 3, w, ow)?;
        self.alias(&p.out, y);
        Ok(())
    }

    /// Adaptive average pooling along one axis: output cell `i` averages input
    /// `floor(i*len/out) .. ceil((i+1)*len/out)`, as Burn and PyTorch define it.
    fn adaptive_axis(&mut self, x: String, axis: i64, len: usize, out: usize) -> Result<String> {
        if len == out {
            return Ok(x);
        }
        let mut parts = Vec::with_capacity(out);
        for i in 0..out {
            let start = (i * len) / out;
            let end = ((i + 1) * len).div_ceil(out);
            let s = self.ints(&[start as i64]);
            let e = self.ints(&[end as i64]);
            let a = self.ints(&[axis]);
            let sl = self.tmp("Slice", vec![x.clone(), s, e, a], vec![]);
            parts.push(self.reduce_node("ReduceMean", sl, Some(&[axis]), true)?);
        }
        Ok(self.tmp("Concat", parts, vec![Attribute::int("axis", axis)]))
    }

    fn interpolate(&mut self, i: &InterpolateOpIr) -> Result<()> {
        let x = self.input(&i.x)?;
        let mut attrs = vec![];
        match i.options.mode {
            InterpolateModeIr::Nearest => {
                attrs.push(Attribute::string("mode", "nearest"));
                attrs.push(Attribute::string(
                    "coordinate_transformation_mode",
                    "asymmetric",
                ));
                attrs.push(Attribute::string("nearest_mode", "floor"));
            }
            InterpolateModeIr::NearestExact => {
                attrs.push(Attribute::string("mode", "nearest"));
                attrs.push(Attribute::string(
                    "coordinate_transformation_mode",
                    "half_pixel",
                ));
                attrs.push(Attribute::string("nearest_mode", "round_prefer_ceil"));
            }
            InterpolateModeIr::Bilinear | InterpolateModeIr::Bicubic => {
                let cubic = matches!(i.options.mode, InterpolateModeIr::Bicubic);
                attrs.push(Attribute::string(
                    "mode",
                    if cubic { "cubic" } else { "linear" },
                ));
                let ctm = if i.options.align_corners {
                    "align_corners"
                } else {
                    "half_pixel"
                };
                attrs.push(Attribute::string("coordinate_transformation_mode", ctm));
                if cubic {
                    attrs.push(Attribute::float("cubic_coeff_a", -0.75));
                }
            }
            InterpolateModeIr::Lanczos3 => {
                return Err(self.unsupported("lanczos3 has no ONNX mode"))
            }
        }
        let sym = self.sym_dims(i.out.id);
        let sizes = self.shape_value(&i.out.shape, &sym)?;
        self.emit(
            "Resize",
            vec![x, String::new(), String::new(), sizes],
            &i.out,
            attrs,
        );
        Ok(())
    }

    /// Scaled dot-product attention, decomposed exactly as Burn's reference implementation.
    fn attention(&mut self, a: &AttentionOpIr) -> Result<()> {
        let dtype = a.query.dtype;
        let q = self.input(&a.query)?;
        let k = self.input(&a.key)?;
        let v = self.input(&a.value)?;
        let head_dim = *a
            .query
            .shape
            .last()
            .ok_or_else(|| self.unsupported("rank-0 query"))?;
        let scale = a
            .options
            .scale
            .map(scalar_f64)
            .unwrap_or_else(|| 1.0 / (head_dim as f64).sqrt());
        let kt = self.tmp(
            "Transpose",
            vec![k],
            vec![Attribute::ints("perm", [0, 1, 3, 2])],
        );
        let qk = self.tmp("MatMul", vec![q, kt], vec![]);
        let s = self.scalar_f(scale, dtype)?;
        let mut scores = self.tmp("Mul", vec![qk, s], vec![]);
        if let Some(cap) = a.options.softcap {
            let c = self.scalar(cap, dtype)?;
            let d = self.tmp("Div", vec![scores, c.clone()], vec![]);
            let t = self.tmp("Tanh", vec![d], vec![]);
            scores = self.tmp("Mul", vec![t, c], vec![]);
        }
        let neg_inf = self.scalar(ScalarIr::Float(f64::NEG_INFINITY), dtype)?;
        if let Some(mask) = &a.mask {
            let m = self.input(mask)?;
            scores = self.tmp("Where", vec![m, neg_inf.clone(), scores], vec![]);
        }
        if a.options.is_causal {
            let (sq, sk) = (a.query.shape[2], a.key.shape[2]);
            if self.is_dynamic(&a.query)
                && self
                    .sym_dims(a.query.id)
                    .get(2)
                    .copied()
                    .flatten()
                    .is_some()
            {
                return Err(ExportError::Dynamic(
                    "causal attention over a batch-dependent axis".into(),
                ));
            }
            let offset = sk as i64 - sq as i64;
            let bits: Vec<u8> = (0..sq as i64)
                .flat_map(|r| (0..sk as i64).map(move |c| u8::from(c > r + offset)))
                .collect();
            let mask = self.g.initializer(
                "causal_mask",
                vec![sq as i64, sk as i64],
                crate::proto::data_type::BOOL,
                crate::proto::RawData::Bytes(bits),
            );
            scores = self.tmp("Where", vec![mask, neg_inf, scores], vec![]);
        }
        if let Some(bias) = &a.attn_bias {
            let b = self.input(bias)?;
            scores = self.tmp("Add", vec![scores, b], vec![]);
        }
        // Burn's NaN-safe softmax: fully masked rows give zeros instead of NaN.
        let (min, min_pos) = match dtype {
            burn::tensor::DType::F64 => (f64::MIN, f64::MIN_POSITIVE),
            _ => (f64::from(f32::MIN), f64::from(f32::MIN_POSITIVE)),
        };
        let mx = self.reduce_node("ReduceMax", scores.clone(), Some(&[3]), true)?;
        let lo = self.scalar_f(min, dtype)?;
        let mx = self.tmp("Max", vec![mx, lo], vec![]);
        let shifted = self.tmp("Sub", vec![scores, mx], vec![]);
        let e = self.tmp("Exp", vec![shifted], vec![]);
        let sum = self.reduce_node("ReduceSum", e.clone(), Some(&[3]), true)?;
        let lo = self.scalar_f(min_pos, dtype)?;
        let sum = self.tmp("Max", vec![sum, lo], vec![]);
        let p = self.tmp("Div", vec![e, sum], vec![]);
        self.emit("MatMul", vec![p, v], &a.out, vec![]);
        Ok(())
    }
}
