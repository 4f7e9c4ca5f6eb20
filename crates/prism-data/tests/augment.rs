//! Augmentation: exact identity, involutive flip, boxes that follow the pixels.

use prism_data::{Augmentation, LabeledBox, Zoom};
use proptest::prelude::*;

fn augmentations() -> impl Strategy<Value = Augmentation> {
    let zoom = prop_oneof![
        Just(Zoom::None),
        (1.0f32..2.0, -10.0f32..60.0, -10.0f32..50.0).prop_map(|(scale, cx, cy)| Zoom::In {
            scale,
            cx,
            cy
        }),
        (1.0f32..2.0, 0.0f32..40.0, 0.0f32..30.0).prop_map(|(scale, x0, y0)| Zoom::Out {
            scale,
            x0,
            y0
        }),
    ];
    (any::<bool>(), zoom).prop_map(|(hflip, zoom)| Augmentation { hflip, zoom })
}

/// An integer box inside a `h x w` image.
fn boxes(h: usize, w: usize) -> impl Strategy<Value = LabeledBox> {
    (0..w - 1, 0..h - 1).prop_flat_map(move |(x, y)| {
        (Just(x), Just(y), 1..=w - x, 1..=h - y).prop_map(|(x, y, bw, bh)| LabeledBox {
            class_id: 1,
            x: x as f32,
            y: y as f32,
            w: bw as f32,
            h: bh as f32,
        })
    })
}

const H: usize = 30;
const W: usize = 44;

/// One channel of ones inside `b` (pixel centres inside the box).
fn box_of_ones(b: &LabeledBox) -> Vec<u8> {
    let mut img = vec![0u8; H * W];
    for y in 0..H {
        for x in 0..W {
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            if cx > b.x && cx < b.x + b.w && cy > b.y && cy < b.y + b.h {
                img[y * W + x] = 1;
            }
        }
    }
    img
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn identity_is_exact(src in proptest::collection::vec(any::<u8>(), 3 * H * W)) {
        let mut dst = vec![-1.0f32; src.len()];
        Augmentation::identity().apply_histogram(&src, 3, H, W, &mut dst);
        let want: Vec<f32> = src.iter().map(|&v| f32::from(v)).collect();
        prop_assert_eq!(dst, want);
    }

    #[test]
    fn flip_twice_is_identity(src in proptest::collection::vec(0u8..=10, 2 * H * W)) {
        let flip = Augmentation { hflip: true, zoom: Zoom::None };
        let mut once = vec![0.0f32; src.len()];
        flip.apply_histogram(&src, 2, H, W, &mut once);
        prop_assert_ne!(&once.iter().map(|&v| v as u8).collect::<Vec<_>>(), &src);
        let once_u8: Vec<u8> = once.iter().map(|&v| v as u8).collect();
        let mut twice = vec![0.0f32; src.len()];
        flip.apply_histogram(&once_u8, 2, H, W, &mut twice);
        prop_assert_eq!(twice.iter().map(|&v| v as u8).collect::<Vec<_>>(), src);
    }

    /// A box filled with ones, augmented: every one lands inside the transformed box, and every
    /// pixel well inside the transformed box is a one.
    #[test]
    fn boxes_follow_the_histogram_mass(aug in augmentations(), b in boxes(H, W)) {
        let mut dst = vec![0.0f32; H * W];
        aug.apply_histogram(&box_of_ones(&b), 1, H, W, &mut dst);
        let moved = aug.apply_boxes(&[b], H, W);
        let eps = 1e-3;
        let Some(m) = moved.first() else {
            // Dropped: it left the image or shrank below 2 pixels; little or no mass remains.
            let mass: f32 = dst.iter().sum();
            prop_assert!(mass <= 4.0 * (W.max(H) as f32), "dropped box kept mass {}", mass);
            return Ok(());
        };
        for y in 0..H {
            for x in 0..W {
                let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
                let inside = cx > m.x - eps && cx < m.x + m.w + eps && cy > m.y - eps && cy < m.y + m.h + eps;
                let deep = cx > m.x + eps && cx < m.x + m.w - eps && cy > m.y + eps && cy < m.y + m.h - eps;
                let v = dst[y * W + x];
                prop_assert!(v == 0.0 || inside, "one at ({}, {}) outside {:?} ({:?})", x, y, m, aug);
                prop_assert!(v == 1.0 || !deep, "zero at ({}, {}) inside {:?} ({:?})", x, y, m, aug);
            }
        }
    }

    #[test]
    fn augmented_boxes_stay_inside_the_image(aug in augmentations(), b in boxes(H, W)) {
        for m in aug.apply_boxes(&[b], H, W) {
            prop_assert!(m.x >= 0.0 && m.y >= 0.0 && m.w > 0.0 && m.h > 0.0);
            prop_assert!(m.x + m.w <= W as f32 + 1e-4 && m.y + m.h <= H as f32 + 1e-4, "{:?}", m);
            prop_assert!(m.w >= 2.0 || m.w >= b.w);
            prop_assert_eq!(m.class_id, b.class_id);
        }
    }

    /// Augmenting the content of a padded tensor leaves the padding zero.
    #[test]
    fn padding_stays_zero(aug in augmentations(), src in proptest::collection::vec(1u8..=10, 2 * (H + 2) * (W + 4))) {
        let (h, w) = (H + 2, W + 4);
        let mut dst = vec![0.0f32; src.len()];
        aug.apply_histogram_in(&src, 2, [h, w], [H, W], &mut dst);
        for c in 0..2 {
            for y in 0..h {
                for x in 0..w {
                    if y >= H || x >= W {
                        prop_assert_eq!(dst[(c * h + y) * w + x], 0.0);
                    }
                }
            }
        }
    }
}

#[test]
fn hflip_moves_boxes_and_pixels() {
    let b = LabeledBox {
        class_id: 0,
        x: 2.0,
        y: 3.0,
        w: 5.0,
        h: 4.0,
    };
    let flip = Augmentation {
        hflip: true,
        zoom: Zoom::None,
    };
    assert_eq!(
        flip.apply_boxes(&[b], H, W),
        vec![LabeledBox {
            x: W as f32 - 7.0,
            ..b
        }]
    );
    let twice = flip.apply_boxes(&flip.apply_boxes(&[b], H, W), H, W);
    assert_eq!(twice, vec![b]);
    assert_eq!(Augmentation::identity().apply_boxes(&[b], H, W), vec![b]);
}

#[test]
fn short_buffers_do_not_panic() {
    let aug = Augmentation {
        hflip: true,
        zoom: Zoom::In {
            scale: 1.5,
            cx: 10.0,
            cy: 10.0,
        },
    };
    let mut dst = vec![0.0f32; 10];
    aug.apply_histogram(&[1, 2, 3], 2, H, W, &mut dst);
    aug.apply_histogram(&vec![1; 2 * H * W], 2, H, W, &mut dst);
}
