//! Pictures of event data: stacked histograms drawn as RGB frames (OFF red, ON blue), boxes on
//! top, written as PNG. Used by `prism data render` and by the detection renderers.

use std::io::BufWriter;
use std::path::Path;

use crate::error::{EventError, Result};

/// An 8-bit RGB image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[u8; 3]>,
}

/// Background of rendered frames: near black, so sparse events stand out.
pub const BACKGROUND: [u8; 3] = [12, 12, 16];
/// OFF events (polarity 0).
pub const OFF_COLOUR: [u8; 3] = [255, 70, 50];
/// ON events (polarity 1).
pub const ON_COLOUR: [u8; 3] = [60, 150, 255];

impl RgbImage {
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        Self {
            width,
            height,
            pixels: vec![fill; width * height],
        }
    }

    /// Sets one pixel; coordinates outside the image are ignored.
    pub fn put(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[y as usize * self.width + x as usize] = colour;
        }
    }

    /// Draws the outline of the box with top-left `(x, y)` and size `(w, h)`, `thickness` pixels
    /// wide, clipped to the image.
    pub fn draw_rect(&mut self, x: f32, y: f32, w: f32, h: f32, colour: [u8; 3], thickness: i64) {
        let (x0, y0) = (x.round() as i64, y.round() as i64);
        let (x1, y1) = ((x + w).round() as i64, (y + h).round() as i64);
        for k in 0..thickness {
            for px in x0..=x1 {
                self.put(px, y0 + k, colour);
                self.put(px, y1 - k, colour);
            }
            for py in y0..=y1 {
                self.put(x0 + k, py, colour);
                self.put(x1 - k, py, colour);
            }
        }
    }

    /// Enlarges the image `factor` times with nearest-neighbour sampling (sensor-sized frames are
    /// small to look at).
    pub fn upscaled(&self, factor: usize) -> RgbImage {
        let factor = factor.max(1);
        let (width, height) = (self.width * factor, self.height * factor);
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            let row = &self.pixels[(y / factor) * self.width..][..self.width];
            for x in 0..width {
                pixels.push(row[x / factor]);
            }
        }
        RgbImage {
            width,
            height,
            pixels,
        }
    }

    /// Writes the image as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).map_err(|e| EventError::io(path, e))?;
        let mut encoder =
            png::Encoder::new(BufWriter::new(file), self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let to_err = |e: png::EncodingError| EventError::io(path, std::io::Error::other(e));
        let mut writer = encoder.write_header().map_err(to_err)?;
        writer
            .write_image_data(self.pixels.as_flattened())
            .map_err(to_err)?;
        writer.finish().map_err(to_err)
    }
}

/// Draws a stacked histogram `[2 * bins, height, width]` (OFF channels first, as RVT orders them):
/// each pixel's OFF and ON counts, summed over the time bins, blend the OFF and ON colours over
/// the background, saturating at `saturation` events.
pub fn histogram_to_rgb(
    hist: &[u8],
    bins: usize,
    height: usize,
    width: usize,
    saturation: u32,
) -> Result<RgbImage> {
    let plane = height * width;
    if hist.len() != 2 * bins * plane {
        return Err(EventError::InvalidArgument(format!(
            "histogram holds {} values, expected 2 x {bins} x {height} x {width}",
            hist.len()
        )));
    }
    let saturation = saturation.max(1) as f32;
    let mut image = RgbImage::new(width, height, BACKGROUND);
    for (i, pixel) in image.pixels.iter_mut().enumerate() {
        let count = |polarity: usize| -> f32 {
            (0..bins)
                .map(|b| u32::from(hist[(polarity * bins + b) * plane + i]))
                .sum::<u32>() as f32
        };
        let off = (count(0) / saturation).min(1.0);
        let on = (count(1) / saturation).min(1.0);
        if off == 0.0 && on == 0.0 {
            continue;
        }
        let mut rgb = [0.0f32; 3];
        for c in 0..3 {
            let bg = f32::from(BACKGROUND[c]);
            rgb[c] =
                bg + off * (f32::from(OFF_COLOUR[c]) - bg) + on * (f32::from(ON_COLOUR[c]) - bg);
        }
        *pixel = rgb.map(|v| v.clamp(0.0, 255.0) as u8);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polarities_get_their_colours() {
        // 1 bin, 1x3 image: pixel 0 OFF only, pixel 1 ON only, pixel 2 empty.
        let hist = [5u8, 0, 0, 0, 5, 0];
        let image = histogram_to_rgb(&hist, 1, 1, 3, 5).unwrap();
        assert_eq!(image.pixels, vec![OFF_COLOUR, ON_COLOUR, BACKGROUND]);
    }

    #[test]
    fn upscaling_repeats_pixels() {
        let mut image = RgbImage::new(2, 1, BACKGROUND);
        image.put(1, 0, ON_COLOUR);
        let big = image.upscaled(2);
        assert_eq!((big.width, big.height), (4, 2));
        assert_eq!(
            big.pixels[..4],
            [BACKGROUND, BACKGROUND, ON_COLOUR, ON_COLOUR]
        );
        assert_eq!(big.pixels[4..], big.pixels[..4]);
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert!(histogram_to_rgb(&[0u8; 5], 1, 1, 3, 5).is_err());
    }

    #[test]
    fn png_round_trip_has_the_right_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let mut image = RgbImage::new(7, 4, BACKGROUND);
        image.draw_rect(1.0, 1.0, 3.0, 2.0, [255, 255, 0], 1);
        image.write_png(&path).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (7, 4));
    }
}
