//! `prism infer` on RGB + thermal + event images: one 5-channel `.npy` or a folder of them
//! (its `images/` sub-folder if it has one), each letterboxed into the model's input, run
//! through [`FrameDetector`], its boxes mapped back to the image's pixels. `--render` draws the
//! RGB and thermal channels side by side with the boxes on both.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use prism_data::multimodal::{read_image, Letterbox, MmImage};
use prism_deploy::engine::Engine;
use prism_deploy::{Detection, FrameDetector};
use prism_events::viz::RgbImage;

use super::progress::Meter;

/// Colours of the classes' boxes (shared with the event renderer's order).
const COLOURS: [[u8; 3]; 6] = [
    [255, 220, 40],
    [40, 230, 120],
    [255, 90, 200],
    [80, 200, 255],
    [255, 140, 40],
    [180, 120, 255],
];
/// Rendered panels are enlarged to at least this width.
const MIN_PANEL_WIDTH: usize = 480;

/// The `.npy` images `input` names: the file itself, or a folder's (or its `images/`'s) `.npy`
/// files sorted by name.
pub fn list_images(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let dir = if input.join("images").is_dir() {
        input.join("images")
    } else {
        input.to_path_buf()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} holds no .npy image", dir.display());
    }
    Ok(files)
}

/// Runs every image; calls `emit(index, name, detections in image pixels)` for each.
pub fn run(
    engine: Arc<Engine>,
    input: &Path,
    render: Option<&Path>,
    mut emit: impl FnMut(u64, &str, &[Detection]) -> std::io::Result<()>,
) -> Result<(usize, usize)> {
    let files = list_images(input)?;
    let spec = engine.spec().clone();
    let (h, w) = spec
        .input_hw()
        .context("the model's input height and width must be static")?;
    let mut detector = FrameDetector::new(engine)?;
    let mut meter = Meter::new("infer", files.len() as u64);
    let mut total = 0;
    for (i, file) in files.iter().enumerate() {
        let image = read_image(file)?;
        let placement = Letterbox::fit(image.width, image.height, [w, h], 1.0, [0.0, 0.0]);
        let pixels: Vec<f32> = placement
            .apply(&image)
            .chw
            .iter()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        let shape = [1, prism_data::multimodal::MM_CHANNELS, h, w];
        let detections: Vec<Detection> = detector
            .detect(&pixels, &shape)
            .with_context(|| format!("running {}", file.display()))?
            .iter()
            .filter_map(|d| to_image(d, &placement, &image))
            .collect();
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        emit(i as u64, &name, &detections).context("writing detections")?;
        if let Some(dir) = render {
            let path = dir.join(format!("{name}.png"));
            side_by_side(&image, &detections)
                .write_png(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        total += detections.len();
        meter.set(i as u64 + 1, || {
            format!("{} images, {total} detections", i + 1)
        });
    }
    meter.finish();
    Ok((files.len(), total))
}

/// A detection in model pixels mapped back onto the image, clipped; `None` if nothing is left.
fn to_image(d: &Detection, placement: &Letterbox, image: &MmImage) -> Option<Detection> {
    let b = placement.to_image([d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2]);
    let (iw, ih) = (image.width as f32, image.height as f32);
    let mut out = *d;
    out.bbox.x1 = b[0].clamp(0.0, iw);
    out.bbox.y1 = b[1].clamp(0.0, ih);
    out.bbox.x2 = b[2].clamp(0.0, iw);
    out.bbox.y2 = b[3].clamp(0.0, ih);
    (out.bbox.width() > 0.0 && out.bbox.height() > 0.0).then_some(out)
}

/// The RGB channels (left) and the thermal channel in grey (right), enlarged, with the boxes
/// drawn on both.
pub fn side_by_side(image: &MmImage, detections: &[Detection]) -> RgbImage {
    let (w, h) = (image.width, image.height);
    let s = MIN_PANEL_WIDTH.div_ceil(w.max(1)).max(1);
    let gap = 4 * s;
    let mut out = RgbImage::new(2 * w * s + gap, h * s, [0, 0, 0]);
    let (r, g, b, t) = (
        image.plane(0),
        image.plane(1),
        image.plane(2),
        image.plane(3),
    );
    for y in 0..h * s {
        for x in 0..w * s {
            let i = (y / s) * w + x / s;
            out.pixels[y * out.width + x] = [r[i], g[i], b[i]];
            out.pixels[y * out.width + w * s + gap + x] = [t[i], t[i], t[i]];
        }
    }
    for d in detections {
        let colour = COLOURS[d.class_id % COLOURS.len()];
        let k = s as f32;
        for x0 in [0.0, (w * s + gap) as f32] {
            out.draw_rect(
                x0 + d.bbox.x1 * k,
                d.bbox.y1 * k,
                d.bbox.width() * k,
                d.bbox.height() * k,
                colour,
                s.min(3) as i64,
            );
        }
    }
    out
}

/// Writes one JSON line per detection of image `index` (`name` is its file stem).
pub fn write_lines(
    out: &mut dyn Write,
    index: u64,
    name: &str,
    detections: &[Detection],
    classes: &[String],
) -> std::io::Result<()> {
    for d in detections {
        let line = serde_json::json!({
            "image": name,
            "index": index,
            "x1": d.bbox.x1,
            "y1": d.bbox.y1,
            "x2": d.bbox.x2,
            "y2": d.bbox.y2,
            "score": d.score,
            "class_id": d.class_id,
            "class": prism_core::detection::class_name(classes, d.class_id),
        });
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
