//! The YOLOX head's anchor points and the decode of its raw outputs, defined once: the loss and
//! SimOTA (training), the Burn model's tensor decode (which can be exported into a graph) and the
//! host-side decode of evaluation and deployment all use this grid, so they agree on which row is
//! which cell.
//!
//! Raw rows are `(dx, dy, log w, log h, obj logit, class logits…)`; decoded rows are
//! `(cx, cy, w, h, obj, class scores…)` with `xy = (xy + cell) × stride`, `wh = exp(wh) × stride`
//! and sigmoids on the scores, as the reference head does in eval mode.

/// One anchor point: cell `(x, y)` of the level with `stride`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub x: f32,
    pub y: f32,
    pub stride: f32,
}

/// The anchor points of a padded `[height, width]` input: level by level in `strides` order,
/// row-major within a level, which is the order of the head's output rows.
pub fn anchors(input_hw: [usize; 2], strides: &[usize]) -> impl Iterator<Item = Anchor> + '_ {
    strides.iter().flat_map(move |&stride| {
        let (h, w) = (input_hw[0] / stride, input_hw[1] / stride);
        (0..h).flat_map(move |y| {
            (0..w).map(move |x| Anchor {
                x: x as f32,
                y: y as f32,
                stride: stride as f32,
            })
        })
    })
}

/// [`anchors`], collected.
pub fn anchor_grid(input_hw: [usize; 2], strides: &[usize]) -> Vec<Anchor> {
    anchors(input_hw, strides).collect()
}

/// How many anchor points (output rows) the head has for this input.
pub fn num_anchors(input_hw: [usize; 2], strides: &[usize]) -> usize {
    strides
        .iter()
        .map(|&s| (input_hw[0] / s) * (input_hw[1] / s))
        .sum()
}

/// Raw output that does not fit the grid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(
        "raw output holds {values} values; expected {anchors} anchors x {row_len} (rows of at \
         least 6: box, objectness, classes)"
    )]
    Shape {
        values: usize,
        anchors: usize,
        row_len: usize,
    },
}

/// Decodes raw head outputs `[A, row_len]` in place, on the host; see the module documentation.
pub fn decode_rows(
    raw: &mut [f32],
    row_len: usize,
    strides: &[usize],
    input_hw: [usize; 2],
) -> Result<(), DecodeError> {
    let expected = num_anchors(input_hw, strides);
    if row_len < 6 || raw.len() != expected * row_len {
        return Err(DecodeError::Shape {
            values: raw.len(),
            anchors: expected,
            row_len,
        });
    }
    for (row, a) in raw
        .chunks_exact_mut(row_len)
        .zip(anchors(input_hw, strides))
    {
        row[0] = (row[0] + a.x) * a.stride;
        row[1] = (row[1] + a.y) * a.stride;
        row[2] = row[2].exp() * a.stride;
        row[3] = row[3].exp() * a.stride;
        for v in &mut row[4..] {
            *v = sigmoid(*v);
        }
    }
    Ok(())
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_the_head_order() {
        let a = anchor_grid([64, 96], &[8, 16, 32]);
        assert_eq!(a.len(), 8 * 12 + 4 * 6 + 2 * 3);
        assert_eq!(a.len(), num_anchors([64, 96], &[8, 16, 32]));
        let at = |x, y, stride| Anchor { x, y, stride };
        assert_eq!(a[1], at(1.0, 0.0, 8.0));
        assert_eq!(a[12], at(0.0, 1.0, 8.0));
        assert_eq!(a[96], at(0.0, 0.0, 16.0));
    }

    #[test]
    fn decode_matches_the_formula() {
        // One 2x2 level of stride 8 on a 16x16 input, 1 class.
        let mut raw = vec![0.0f32; 4 * 6];
        raw[6..12].copy_from_slice(&[0.5, 0.25, 0.0, 1.0f32.ln(), 0.0, 0.0]); // cell (1, 0)
        decode_rows(&mut raw, 6, &[8], [16, 16]).unwrap();
        assert_eq!(&raw[6..10], &[12.0, 2.0, 8.0, 8.0]);
        assert_eq!(raw[10], 0.5);
        let err = decode_rows(&mut raw, 6, &[8], [32, 16]);
        assert_eq!(
            err,
            Err(DecodeError::Shape {
                values: 24,
                anchors: 8,
                row_len: 6
            })
        );
    }
}
