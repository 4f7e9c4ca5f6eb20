//! A minimal horizontal bar chart written as PNG with the `png` crate and a built-in 5x7 font:
//! enough for benchmark results without a plotting dependency.

use std::path::Path;

/// One group of bars (one task); values share the group's scale.
#[derive(Debug, Clone)]
pub struct Group {
    pub title: String,
    /// (label, value, highlighted)
    pub bars: Vec<(String, f64, bool)>,
}

const SCALE: usize = 2; // font pixel size
const CHAR_W: usize = 6 * SCALE;
const LINE_H: usize = 9 * SCALE;
const WIDTH: usize = 1200;
const LABEL_W: usize = 460;
const BAR_H: usize = 22;
const GAP: usize = 8;

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: [u8; 3]) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                let i = (yy * self.w + xx) * 3;
                self.px[i..i + 3].copy_from_slice(&rgb);
            }
        }
    }

    fn text(&mut self, x: usize, y: usize, s: &str, rgb: [u8; 3]) {
        for (k, c) in s.chars().enumerate() {
            let rows = glyph(c);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits >> (4 - col) & 1 == 1 {
                        self.rect(
                            x + k * CHAR_W + col * SCALE,
                            y + r * SCALE,
                            SCALE,
                            SCALE,
                            rgb,
                        );
                    }
                }
            }
        }
    }
}

/// Draws `groups` into a PNG at `path`; each bar is labelled with its value and `unit`.
pub fn bar_chart(path: &Path, title: &str, unit: &str, groups: &[Group]) -> anyhow::Result<()> {
    let rows: usize = groups.iter().map(|g| g.bars.len()).sum();
    let h = 2 * LINE_H + groups.len() * (LINE_H + 2 * GAP) + rows * (BAR_H + GAP) + 2 * GAP;
    let mut c = Canvas::new(WIDTH, h);
    c.text(GAP, GAP, title, [0, 0, 0]);
    let mut y = 2 * LINE_H + GAP;
    let bar_max = WIDTH - LABEL_W - 160;
    for g in groups {
        c.text(GAP, y, &g.title, [0, 0, 0]);
        y += LINE_H + GAP;
        let max = g
            .bars
            .iter()
            .map(|b| b.1)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        for (label, value, ours) in &g.bars {
            let fit = (LABEL_W - 3 * CHAR_W - GAP) / CHAR_W;
            let label: String = label.chars().take(fit).collect();
            c.text(
                GAP + 2 * CHAR_W,
                y + (BAR_H - 7 * SCALE) / 2,
                &label,
                [40, 40, 40],
            );
            let len = ((value / max) * bar_max as f64).round().max(1.0) as usize;
            let color = if *ours {
                [31, 119, 180]
            } else {
                [160, 160, 160]
            };
            c.rect(LABEL_W, y, len, BAR_H, color);
            c.text(
                LABEL_W + len + GAP,
                y + (BAR_H - 7 * SCALE) / 2,
                &format!("{value:.1} {unit}"),
                [0, 0, 0],
            );
            y += BAR_H + GAP;
        }
        y += GAP;
    }
    let file = std::fs::File::create(path)?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), WIDTH as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&c.px)?;
    Ok(())
}

/// 5x7 glyph rows (bit 4 = leftmost column); lowercase is drawn as uppercase, unknown as blank.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        _ => [0; 7],
    }
}
