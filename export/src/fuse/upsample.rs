//! Nearest upsampling: `Reshape [N, C, H, 1, W, 1]` -> `Expand [N, C, H, a, W, b]` ->
//! `Reshape [N, C, aH, bW]` becomes one `Resize` (nearest, integer scales).

use std::collections::HashSet;

use super::Rewriter;
use crate::proto::{Attribute, NodeProto};

impl Rewriter<'_> {
    /// `Reshape -> Expand -> Reshape` nearest upsampling by integer factors -> `Resize`.
    pub(super) fn upsample_to_resize(&mut self) -> usize {
        let ix = self.index();
        let mut dead = HashSet::new();
        let mut edits = Vec::new();
        for (ei, e) in self.g.node.iter().enumerate() {
            if e.op_type != "Expand" {
                continue;
            }
            let Some(&r1i) = ix.producer.get(&e.input[0]) else {
                continue;
            };
            let r1 = &self.g.node[r1i];
            if r1.op_type != "Reshape"
                || !self.single_use(&ix, &e.input[0])
                || !self.single_use(&ix, &e.output[0])
            {
                continue;
            }
            let r2i = ix.consumers[&e.output[0]][0];
            let r2 = &self.g.node[r2i];
            if r2.op_type != "Reshape" {
                continue;
            }
            let (Some(xs), Some(s1), Some(se), Some(s2)) = (
                self.static_shape(&r1.input[0]),
                self.static_shape(&r1.output[0]),
                self.static_shape(&e.output[0]),
                self.static_shape(&r2.output[0]),
            ) else {
                continue;
            };
            let &[n, c, h, w] = xs.as_slice() else {
                continue;
            };
            if s1.as_slice() != [n, c, h, 1, w, 1] {
                continue;
            }
            let &[n2, c2, h2, a, w2, b] = se.as_slice() else {
                continue;
            };
            if (n2, c2, h2, w2) != (n, c, h, w)
                || a < 1
                || b < 1
                || s2.as_slice() != [n, c, h * a, w * b]
            {
                continue;
            }
            edits.push((r2i, r1.input[0].clone(), r2.output[0].clone(), [a, b]));
            dead.extend([r1i, ei]);
        }
        let count = edits.len();
        for (r2i, x, out, [a, b]) in edits {
            let scales = self.add_f32("upsample_scales", vec![4], &[1.0, 1.0, a as f32, b as f32]);
            let name = self.fresh("Resize");
            self.g.node[r2i] = NodeProto {
                input: vec![x, String::new(), scales],
                output: vec![out],
                name,
                op_type: "Resize".into(),
                attribute: vec![
                    Attribute::string("mode", "nearest"),
                    Attribute::string("coordinate_transformation_mode", "asymmetric"),
                    Attribute::string("nearest_mode", "floor"),
                ],
                doc_string: "nearest upsampling (reshape + expand + reshape)".into(),
            };
        }
        self.remove_nodes(&dead);
        count
    }
}
