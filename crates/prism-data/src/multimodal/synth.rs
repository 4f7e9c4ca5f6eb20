//! `prism data synth-mm`: synthetic RGB + thermal + event scenes in the dataset layout of
//! [`super`], so that the multimodal detector can be trained and tested without a camera rig.
//!
//! Each image holds one to four objects, `person` (tall) or `car` (wide):
//! - RGB: a coloured box over a textured background; at night the whole RGB image is dark and
//!   noisy, so objects are barely visible in it.
//! - thermal: objects are warm (people warmer than cars) over a cool, slowly varying background.
//! - event: moving objects fire along their vertical edges (the motion edges), over sparse noise.
//!
//! Clutter that is visible in one modality only, never labelled: painted boxes in RGB (object
//! shaped and coloured, cold, still), warm blobs in thermal (no shape in RGB, no events) and
//! flickering event streaks. A detector that reads one modality alone is fooled by its clutter;
//! one that fuses them is not. The pool mixes day and night half and half; `daytest` and
//! `nighttest` hold day-only and night-only images. Everything is deterministic per seed.

use std::path::{Path, PathBuf};

use prism_events::synth::rng::SplitMix64;

use super::{
    io_error, write_image, write_labels, ChannelOrder, MmDataError, MmImage, MmResult, YoloBox,
};

/// The classes of the synthetic scenes, in index order.
pub const MM_SYNTH_CLASSES: [&str; 2] = ["person", "car"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthMmOptions {
    /// Images in the pool (`images/`); each test folder gets a fifth of that (at least 1).
    pub images: usize,
    pub seed: u64,
    /// Image width and height in pixels.
    pub size: [usize; 2],
    /// Draw the single-modality clutter. Without it the scenes are otherwise identical (the
    /// same objects, labels and noise): the random draws are made and the clutter left unpainted.
    pub clutter: bool,
}

impl Default for SynthMmOptions {
    fn default() -> Self {
        Self {
            images: 200,
            seed: 0,
            size: [160, 128],
            clutter: true,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthMmReport {
    /// Per folder (`images`, `daytest`, `nighttest`): images and objects written.
    pub splits: Vec<(String, usize, usize)>,
}

/// Writes the scenes into `out` (created; existing files of the same names are replaced).
pub fn synth_mm(out: &Path, options: &SynthMmOptions) -> MmResult<SynthMmReport> {
    let [w, h] = options.size;
    if !(32..=4096).contains(&w) || !(32..=4096).contains(&h) {
        return Err(MmDataError::Folder {
            path: out.to_path_buf(),
            message: format!("image size {w}x{h} is outside 32..=4096 per side"),
        });
    }
    if options.images == 0 {
        return Err(MmDataError::Folder {
            path: out.to_path_buf(),
            message: "--images must be at least 1".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let classes = out.join("classes.txt");
    std::fs::write(&classes, MM_SYNTH_CLASSES.join("\n") + "\n").map_err(io_error(&classes))?;
    let tests = (options.images / 5).max(1);
    let plan: [(&str, PathBuf, usize, Option<bool>); 3] = [
        ("images", out.to_path_buf(), options.images, None),
        ("daytest", out.join("daytest"), tests, Some(false)),
        ("nighttest", out.join("nighttest"), tests, Some(true)),
    ];
    let mut splits = Vec::new();
    for (purpose, (name, dir, count, night)) in plan.into_iter().enumerate() {
        let images = dir.join("images");
        let labels = dir.join("labels");
        std::fs::create_dir_all(&images).map_err(io_error(&images))?;
        std::fs::create_dir_all(&labels).map_err(io_error(&labels))?;
        let mut objects = 0;
        for i in 0..count {
            let mut rng = SplitMix64::stream(options.seed, purpose as u64 + 1, i as u64);
            let night = night.unwrap_or(i % 2 == 1);
            let (image, boxes) = scene(&mut rng, w, h, night, options.clutter);
            let stem = format!("{}_{i:05}", if night { "night" } else { "day" });
            write_image(
                &images.join(format!("{stem}.npy")),
                &image,
                ChannelOrder::Hwc,
            )?;
            write_labels(&labels.join(format!("{stem}.txt")), &boxes)?;
            objects += boxes.len();
        }
        splits.push((name.to_string(), count, objects));
    }
    Ok(SynthMmReport { splits })
}

const R: usize = 0;
const THERMAL: usize = 3;
const EVENT: usize = 4;

/// A box in pixels: x0, y0, x1, y1 (exclusive).
type Rect = [usize; 4];

fn random_rect(rng: &mut SplitMix64, w: usize, h: usize, tall: bool) -> Rect {
    let short = rng.range(0.06, 0.14) * h as f64;
    let (bw, bh) = if tall {
        (short, short * rng.range(2.0, 2.8))
    } else {
        (short * rng.range(1.6, 2.2), short)
    };
    let (bw, bh) = ((bw as usize).clamp(4, w / 2), (bh as usize).clamp(4, h / 2));
    let x0 = (rng.uniform() * (w - bw) as f64) as usize;
    let y0 = (rng.uniform() * (h - bh) as f64) as usize;
    [x0, y0, x0 + bw, y0 + bh]
}

fn overlaps(a: &Rect, b: &Rect) -> bool {
    a[0] < b[2] + 2 && b[0] < a[2] + 2 && a[1] < b[3] + 2 && b[1] < a[3] + 2
}

fn fill(image: &mut MmImage, channel: usize, r: &Rect, mut value: impl FnMut(usize, usize) -> u8) {
    let w = image.width;
    let plane = image.plane_mut(channel);
    for y in r[1]..r[3] {
        for x in r[0]..r[2] {
            plane[y * w + x] = value(x, y);
        }
    }
}

fn clamp(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// One image and its objects.
fn scene(
    rng: &mut SplitMix64,
    w: usize,
    h: usize,
    night: bool,
    paint_clutter: bool,
) -> (MmImage, Vec<YoloBox>) {
    let mut image = MmImage::zeros(h, w);
    // Backgrounds: a textured RGB scene, a cool thermal gradient, sparse event noise.
    let tint = [
        rng.range(90.0, 170.0),
        rng.range(90.0, 170.0),
        rng.range(90.0, 170.0),
    ];
    let (fx, fy) = (rng.range(0.02, 0.08), rng.range(0.02, 0.08));
    let cool = rng.range(40.0, 80.0);
    for y in 0..h {
        for x in 0..w {
            let texture = 25.0 * ((x as f64 * fx).sin() * (y as f64 * fy).cos());
            for (c, base) in tint.iter().enumerate() {
                let v = base + texture + 8.0 * rng.normal();
                image.plane_mut(R + c)[y * w + x] = clamp(v);
            }
            let t = cool + 15.0 * (y as f64 / h as f64) + 3.0 * rng.normal();
            image.plane_mut(THERMAL)[y * w + x] = clamp(t);
            if rng.uniform() < 0.01 {
                image.plane_mut(EVENT)[y * w + x] = if rng.coin() { 255 } else { 128 };
            }
        }
    }
    let mut taken: Vec<Rect> = Vec::new();
    let mut place = |rng: &mut SplitMix64, tall: bool| -> Option<Rect> {
        for _ in 0..20 {
            let r = random_rect(rng, w, h, tall);
            if taken.iter().all(|t| !overlaps(t, &r)) {
                taken.push(r);
                return Some(r);
            }
        }
        None
    };
    // Objects.
    let mut boxes = Vec::new();
    let n = 1 + (rng.next_u64() % 4) as usize;
    for _ in 0..n {
        let class = (rng.next_u64() % 2) as usize;
        let Some(r) = place(rng, class == 0) else {
            continue;
        };
        let colour = [
            rng.range(0.0, 255.0),
            rng.range(0.0, 255.0),
            rng.range(0.0, 255.0),
        ];
        for (c, &v) in colour.iter().enumerate() {
            let mut local = SplitMix64::new(rng.next_u64());
            fill(&mut image, R + c, &r, |_, _| {
                clamp(v + 6.0 * local.normal())
            });
        }
        let warm = if class == 0 {
            rng.range(200.0, 240.0)
        } else {
            rng.range(150.0, 190.0)
        };
        let mut local = SplitMix64::new(rng.next_u64());
        fill(&mut image, THERMAL, &r, |_, _| {
            clamp(warm + 5.0 * local.normal())
        });
        // Motion edges: the leading and trailing columns fire, two pixels wide.
        let polarity = if rng.coin() { 255 } else { 128 };
        for x0 in [r[0], r[2].saturating_sub(2).max(r[0])] {
            let edge = [x0, r[1], (x0 + 2).min(r[2]), r[3]];
            let mut local = SplitMix64::new(rng.next_u64());
            fill(&mut image, EVENT, &edge, |_, _| {
                if local.uniform() < 0.85 {
                    polarity
                } else {
                    0
                }
            });
        }
        boxes.push(YoloBox {
            class,
            x_center: ((r[0] + r[2]) as f32 / 2.0) / w as f32,
            y_center: ((r[1] + r[3]) as f32 / 2.0) / h as f32,
            width: (r[2] - r[0]) as f32 / w as f32,
            height: (r[3] - r[1]) as f32 / h as f32,
        });
    }
    // Clutter, one modality each, never labelled.
    let clutter = (rng.next_u64() % 3) as usize + 1;
    for k in 0..clutter {
        let tall = rng.coin();
        let Some(r) = place(rng, tall) else { continue };
        match k % 3 {
            0 => {
                // A painted box: object-shaped and coloured in RGB, cold, still.
                for c in 0..3 {
                    let v = rng.range(0.0, 255.0);
                    if paint_clutter {
                        fill(&mut image, R + c, &r, |_, _| clamp(v));
                    }
                }
            }
            1 => {
                // A warm blob: an ellipse in thermal only.
                let heat = rng.range(170.0, 230.0);
                if !paint_clutter {
                    continue;
                }
                let (cx, cy) = ((r[0] + r[2]) as f64 / 2.0, (r[1] + r[3]) as f64 / 2.0);
                let (rx, ry) = ((r[2] - r[0]) as f64 / 2.0, (r[3] - r[1]) as f64 / 2.0);
                let plane = image.plane_mut(THERMAL);
                for y in r[1]..r[3] {
                    for x in r[0]..r[2] {
                        let d = ((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2);
                        if d <= 1.0 {
                            plane[y * w + x] = clamp(heat);
                        }
                    }
                }
            }
            _ if !paint_clutter => {}
            _ => {
                // Flicker: a horizontal streak of events.
                let y = (r[1] + r[3]) / 2;
                let streak = [r[0], y, r[2], (y + 1).min(h)];
                fill(&mut image, EVENT, &streak, |_, _| 255);
            }
        }
    }
    if night {
        for c in 0..3 {
            let mut local = SplitMix64::new(rng.next_u64());
            for v in image.plane_mut(R + c) {
                *v = clamp(f64::from(*v) * 0.12 + 6.0 + 10.0 * local.normal().abs());
            }
        }
    }
    (image, boxes)
}
