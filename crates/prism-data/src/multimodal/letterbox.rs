//! Letterbox resizing to the model's input size, with boxes mapped both ways, and the training
//! augmentations (horizontal flip, scale jitter).
//!
//! The image is scaled by one factor so it fits the model's `W x H`, centred, and the rest is
//! filled with zeros (black RGB, the coldest thermal value, no events). Bilinear resampling
//! (pixel centres aligned, as OpenCV's `INTER_LINEAR`).

use prism_events::synth::rng::SplitMix64;

use super::{MmImage, YoloBox, MM_CHANNELS};

/// How an image was placed in the model's input: `model = image * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    /// Offset in model pixels (x, y); negative when a zoomed-in image is cropped.
    pub offset: [f32; 2],
    /// The model's input width and height.
    pub size: [usize; 2],
}

impl Letterbox {
    /// The letterbox of an image of `width x height` into `size` (`[W, H]`), zoomed by `zoom`
    /// (1 = fit) and shifted by `shift` (in `[-1, 1]` of the free room on each axis; 0 centres).
    pub fn fit(width: usize, height: usize, size: [usize; 2], zoom: f32, shift: [f32; 2]) -> Self {
        let [mw, mh] = size;
        let scale = (mw as f32 / width as f32).min(mh as f32 / height as f32) * zoom;
        let room = [
            mw as f32 - width as f32 * scale,
            mh as f32 - height as f32 * scale,
        ];
        let offset = [0, 1].map(|i| room[i] / 2.0 * (1.0 + shift[i].clamp(-1.0, 1.0)));
        Self {
            scale,
            offset,
            size,
        }
    }

    /// A box in image pixels `[x1, y1, x2, y2]` in model pixels.
    pub fn to_model(&self, b: [f32; 4]) -> [f32; 4] {
        let [ox, oy] = self.offset;
        [
            b[0] * self.scale + ox,
            b[1] * self.scale + oy,
            b[2] * self.scale + ox,
            b[3] * self.scale + oy,
        ]
    }

    /// A box in model pixels back in image pixels (detections drawn on the original image).
    pub fn to_image(&self, b: [f32; 4]) -> [f32; 4] {
        let [ox, oy] = self.offset;
        [
            (b[0] - ox) / self.scale,
            (b[1] - oy) / self.scale,
            (b[2] - ox) / self.scale,
            (b[3] - oy) / self.scale,
        ]
    }

    /// Resamples `image` into the model's input.
    pub fn apply(&self, image: &MmImage) -> MmImage {
        let [mw, mh] = self.size;
        let mut out = MmImage::zeros(mh, mw);
        let (w, h) = (image.width, image.height);
        let [ox, oy] = self.offset;
        for y in 0..mh {
            let sy = (y as f32 + 0.5 - oy) / self.scale - 0.5;
            if sy < -0.5 || sy > h as f32 - 0.5 {
                continue;
            }
            let y0 = sy.floor().clamp(0.0, (h - 1) as f32) as usize;
            let y1 = (y0 + 1).min(h - 1);
            let fy = (sy - y0 as f32).clamp(0.0, 1.0);
            for x in 0..mw {
                let sx = (x as f32 + 0.5 - ox) / self.scale - 0.5;
                if sx < -0.5 || sx > w as f32 - 0.5 {
                    continue;
                }
                let x0 = sx.floor().clamp(0.0, (w - 1) as f32) as usize;
                let x1 = (x0 + 1).min(w - 1);
                let fx = (sx - x0 as f32).clamp(0.0, 1.0);
                for c in 0..MM_CHANNELS {
                    let p = image.plane(c);
                    let top =
                        f32::from(p[y0 * w + x0]) * (1.0 - fx) + f32::from(p[y0 * w + x1]) * fx;
                    let bottom =
                        f32::from(p[y1 * w + x0]) * (1.0 - fx) + f32::from(p[y1 * w + x1]) * fx;
                    out.plane_mut(c)[y * mw + x] = (top * (1.0 - fy) + bottom * fy).round() as u8;
                }
            }
        }
        out
    }
}

/// An object in model pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelBox {
    pub class: usize,
    /// `[x1, y1, x2, y2]`.
    pub corners: [f32; 4],
}

/// Letterboxes `image` and its labels into `size`: the model input and the boxes in its pixels,
/// clipped to it; boxes left with under a quarter of their area, or under 2 pixels a side, are
/// dropped (they were cropped away by a zoom).
pub fn letterbox(
    image: &MmImage,
    boxes: &[YoloBox],
    placement: &Letterbox,
) -> (MmImage, Vec<PixelBox>) {
    let [mw, mh] = placement.size;
    let out = placement.apply(image);
    let mut kept = Vec::new();
    for b in boxes {
        let m = placement.to_model(b.to_pixels(image.width, image.height));
        let area = (m[2] - m[0]) * (m[3] - m[1]);
        let c = [
            m[0].clamp(0.0, mw as f32),
            m[1].clamp(0.0, mh as f32),
            m[2].clamp(0.0, mw as f32),
            m[3].clamp(0.0, mh as f32),
        ];
        let (cw, ch) = (c[2] - c[0], c[3] - c[1]);
        if cw >= 2.0 && ch >= 2.0 && cw * ch >= 0.25 * area {
            kept.push(PixelBox {
                class: b.class,
                corners: c,
            });
        }
    }
    (out, kept)
}

/// Mirrors an image and its boxes left to right.
pub fn flip_horizontal(image: &mut MmImage, boxes: &mut [PixelBox]) {
    let w = image.width;
    for c in 0..MM_CHANNELS {
        for row in image.plane_mut(c).chunks_mut(w) {
            row.reverse();
        }
    }
    for b in boxes {
        let [x1, y1, x2, y2] = b.corners;
        b.corners = [w as f32 - x2, y1, w as f32 - x1, y2];
    }
}

/// Training augmentation: a random zoom in `zoom` (e.g. `[0.8, 1.2]`), a random placement and a
/// horizontal flip with probability `flip`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmAugment {
    pub zoom: [f32; 2],
    pub flip: f32,
}

impl Default for MmAugment {
    fn default() -> Self {
        Self {
            zoom: [0.8, 1.2],
            flip: 0.5,
        }
    }
}

impl MmAugment {
    /// The augmented model input and boxes of one sample, deterministic in `rng`.
    pub fn apply(
        &self,
        image: &MmImage,
        boxes: &[YoloBox],
        size: [usize; 2],
        rng: &mut SplitMix64,
    ) -> (MmImage, Vec<PixelBox>) {
        let zoom = rng.range(f64::from(self.zoom[0]), f64::from(self.zoom[1])) as f32;
        let shift = [rng.range(-1.0, 1.0) as f32, rng.range(-1.0, 1.0) as f32];
        let placement = Letterbox::fit(image.width, image.height, size, zoom, shift);
        let (mut out, mut kept) = letterbox(image, boxes, &placement);
        if rng.uniform() < f64::from(self.flip) {
            flip_horizontal(&mut out, &mut kept);
        }
        (out, kept)
    }
}
