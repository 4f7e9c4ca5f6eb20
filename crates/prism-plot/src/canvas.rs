//! An RGB raster with the few drawing primitives charts need, and PNG output.
//!
//! Coordinates are pixels, origin top-left, `x` to the right and `y` down. Integer
//! primitives (rectangles, axis-aligned lines, dashes) fill whole pixels; the float
//! primitives (lines, polylines, discs) are antialiased, pixel `(i, j)` covering the
//! square `[i, i+1] x [j, j+1]`. Everything is clipped to the canvas and to the clip
//! rectangle, so no drawing call can panic on odd coordinates.

use std::path::Path;

use crate::color::Color;
use crate::error::PlotError;

/// Largest accepted image side, in pixels.
pub const MAX_SIDE: u32 = 8192;

/// An axis-aligned rectangle in pixels (`w`/`h` may be zero or negative: then it is empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

impl Rect {
    /// A rectangle from its top-left corner and size.
    pub const fn new(x: i32, y: i32, w: i32, h: i32) -> Self {
        Self { x, y, w, h }
    }

    /// One past the right edge.
    pub fn right(&self) -> i32 {
        self.x.saturating_add(self.w)
    }

    /// One past the bottom edge.
    pub fn bottom(&self) -> i32 {
        self.y.saturating_add(self.h)
    }

    /// True when the rectangle covers no pixel.
    pub fn is_empty(&self) -> bool {
        self.w <= 0 || self.h <= 0
    }

    /// The overlap of two rectangles (possibly empty).
    pub fn intersect(&self, o: &Rect) -> Rect {
        let x = self.x.max(o.x);
        let y = self.y.max(o.y);
        let r = self.right().min(o.right());
        let b = self.bottom().min(o.bottom());
        Rect::new(x, y, r.saturating_sub(x), b.saturating_sub(y))
    }

    /// Shrinks by `d` pixels on every side.
    pub fn inset(&self, d: i32) -> Rect {
        Rect::new(
            self.x.saturating_add(d),
            self.y.saturating_add(d),
            self.w.saturating_sub(d.saturating_mul(2)),
            self.h.saturating_sub(d.saturating_mul(2)),
        )
    }

    /// True when pixel `(x, y)` lies inside.
    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x && x < self.right() && y >= self.y && y < self.bottom()
    }
}

/// An RGB image (8 bits per channel) with a white or other solid background.
#[derive(Clone)]
pub struct Canvas {
    width: u32,
    height: u32,
    data: Vec<u8>,
    clip: Rect,
}

impl std::fmt::Debug for Canvas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canvas")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("clip", &self.clip)
            .finish_non_exhaustive()
    }
}

impl Canvas {
    /// A canvas filled with `background`. Each side must be `1..=MAX_SIDE`.
    pub fn new(width: u32, height: u32, background: Color) -> Result<Self, PlotError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(PlotError::InvalidSize { width, height });
        }
        let n = width as usize * height as usize;
        let mut data = Vec::with_capacity(n * 3);
        for _ in 0..n {
            data.extend_from_slice(&[background.r, background.g, background.b]);
        }
        Ok(Self {
            width,
            height,
            data,
            clip: Rect::new(0, 0, width as i32, height as i32),
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Raw RGB bytes, row by row.
    pub fn pixels(&self) -> &[u8] {
        &self.data
    }

    /// The whole canvas as a rectangle.
    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    /// Restricts drawing to `clip` (intersected with the canvas); `None` lifts the restriction.
    pub fn set_clip(&mut self, clip: Option<Rect>) {
        self.clip = match clip {
            Some(r) => r.intersect(&self.bounds()),
            None => self.bounds(),
        };
    }

    /// The colour at `(x, y)`, or `None` outside the canvas.
    pub fn pixel(&self, x: i32, y: i32) -> Option<Color> {
        self.index(x, y, &self.bounds())
            .map(|i| Color::rgb(self.data[i], self.data[i + 1], self.data[i + 2]))
    }

    fn index(&self, x: i32, y: i32, within: &Rect) -> Option<usize> {
        within
            .contains(x, y)
            .then(|| (y as usize * self.width as usize + x as usize) * 3)
    }

    /// Sets one pixel (clipped).
    pub fn put(&mut self, x: i32, y: i32, c: Color) {
        if let Some(i) = self.index(x, y, &self.clip) {
            self.data[i] = c.r;
            self.data[i + 1] = c.g;
            self.data[i + 2] = c.b;
        }
    }

    /// Paints `c` over pixel `(x, y)` with opacity `alpha` in `0..=1` (clipped).
    pub fn blend(&mut self, x: i32, y: i32, c: Color, alpha: f32) {
        if alpha <= 0.0 || alpha.is_nan() {
            return;
        }
        if let Some(i) = self.index(x, y, &self.clip) {
            let old = Color::rgb(self.data[i], self.data[i + 1], self.data[i + 2]);
            let new = old.mix(c, alpha);
            self.data[i] = new.r;
            self.data[i + 1] = new.g;
            self.data[i + 2] = new.b;
        }
    }

    /// Fills a rectangle (clipped).
    pub fn fill_rect(&mut self, r: Rect, c: Color) {
        let r = r.intersect(&self.clip);
        if r.is_empty() {
            return;
        }
        for y in r.y..r.bottom() {
            for x in r.x..r.right() {
                self.put(x, y, c);
            }
        }
    }

    /// Draws the 1-pixel outline of a rectangle (clipped).
    pub fn stroke_rect(&mut self, r: Rect, c: Color) {
        if r.is_empty() {
            return;
        }
        self.hline(r.x, r.right() - 1, r.y, c);
        self.hline(r.x, r.right() - 1, r.bottom() - 1, c);
        self.vline(r.x, r.y, r.bottom() - 1, c);
        self.vline(r.right() - 1, r.y, r.bottom() - 1, c);
    }

    /// A horizontal 1-pixel line from `x0` to `x1` inclusive.
    pub fn hline(&mut self, x0: i32, x1: i32, y: i32, c: Color) {
        let a = x0.min(x1).max(self.clip.x);
        let b = x0.max(x1).min(self.clip.right() - 1);
        if b >= a {
            self.fill_rect(Rect::new(a, y, b - a + 1, 1), c);
        }
    }

    /// A vertical 1-pixel line from `y0` to `y1` inclusive.
    pub fn vline(&mut self, x: i32, y0: i32, y1: i32, c: Color) {
        let a = y0.min(y1).max(self.clip.y);
        let b = y0.max(y1).min(self.clip.bottom() - 1);
        if b >= a {
            self.fill_rect(Rect::new(x, a, 1, b - a + 1), c);
        }
    }

    /// A dashed horizontal line: `dash` pixels on, `gap` pixels off, starting at `x0`.
    pub fn dashed_hline(&mut self, x0: i32, x1: i32, y: i32, dash: i32, gap: i32, c: Color) {
        let (a, b) = (i64::from(x0.min(x1)), i64::from(x0.max(x1)));
        let (dash, period) = (
            i64::from(dash.max(1)),
            i64::from(dash.max(1)) + i64::from(gap.max(0)),
        );
        // Skip whole periods left of the clip rectangle so huge ranges stay cheap.
        let lo = i64::from(self.clip.x);
        let mut x = if a < lo {
            a + (lo - a) / period * period
        } else {
            a
        };
        let end = b.min(i64::from(self.clip.right()));
        while x <= end {
            self.hline(x as i32, (x + dash - 1).min(b) as i32, y, c);
            x += period;
        }
    }

    /// A dashed vertical line: `dash` pixels on, `gap` pixels off, starting at the bottom
    /// (`max(y0, y1)`) so dashes line up with the x axis.
    pub fn dashed_vline(&mut self, x: i32, y0: i32, y1: i32, dash: i32, gap: i32, c: Color) {
        let (a, b) = (i64::from(y0.min(y1)), i64::from(y0.max(y1)));
        let (dash, period) = (
            i64::from(dash.max(1)),
            i64::from(dash.max(1)) + i64::from(gap.max(0)),
        );
        let hi = i64::from(self.clip.bottom());
        let mut y = if b > hi {
            b - (b - hi) / period * period
        } else {
            b
        };
        let end = a.max(i64::from(self.clip.y) - 1);
        while y >= end {
            self.vline(x, y as i32, (y - dash + 1).max(a) as i32, c);
            y -= period;
        }
    }

    /// An antialiased straight line of the given width (in pixels).
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: f64, c: Color) {
        self.polyline(&[(x0, y0), (x1, y1)], width, c);
    }

    /// An antialiased connected line through `points`, with round joins.
    ///
    /// Non-finite points break the line into separate pieces. Overlapping segments
    /// do not darken each other: coverage is accumulated as a maximum, then painted once.
    pub fn polyline(&mut self, points: &[(f64, f64)], width: f64, c: Color) {
        let hw = if width.is_finite() {
            (width / 2.0).clamp(0.25, 64.0)
        } else {
            1.0
        };
        let finite: Vec<&(f64, f64)> = points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        if finite.is_empty() || self.clip.is_empty() {
            return;
        }
        // Coverage mask over the clip rectangle, restricted to the points' bounding box.
        let fmin = |a: f64, b: f64| a.min(b);
        let fmax = |a: f64, b: f64| a.max(b);
        let minx = finite.iter().map(|p| p.0).fold(f64::INFINITY, fmin) - hw - 1.0;
        let maxx = finite.iter().map(|p| p.0).fold(f64::NEG_INFINITY, fmax) + hw + 1.0;
        let miny = finite.iter().map(|p| p.1).fold(f64::INFINITY, fmin) - hw - 1.0;
        let maxy = finite.iter().map(|p| p.1).fold(f64::NEG_INFINITY, fmax) + hw + 1.0;
        let clip = self.clip;
        let bx0 = (minx.floor().max(f64::from(clip.x))) as i32;
        let by0 = (miny.floor().max(f64::from(clip.y))) as i32;
        let bx1 = (maxx.ceil().min(f64::from(clip.right()))) as i32;
        let by1 = (maxy.ceil().min(f64::from(clip.bottom()))) as i32;
        if bx1 <= bx0 || by1 <= by0 {
            return;
        }
        let mw = (bx1 - bx0) as usize;
        let mh = (by1 - by0) as usize;
        let mut mask = vec![0f32; mw * mh];
        let mut stamp = |ax: f64, ay: f64, bx: f64, by: f64| {
            let pad = hw + 1.0;
            let Some((ax, ay, bx, by)) = clip_segment(
                (ax, ay, bx, by),
                f64::from(bx0) - pad,
                f64::from(by0) - pad,
                f64::from(bx1) + pad,
                f64::from(by1) + pad,
            ) else {
                return;
            };
            let x0 = ((ax.min(bx) - pad).floor() as i32).max(bx0);
            let x1 = ((ax.max(bx) + pad).ceil() as i32).min(bx1);
            let y0 = ((ay.min(by) - pad).floor() as i32).max(by0);
            let y1 = ((ay.max(by) + pad).ceil() as i32).min(by1);
            for py in y0..y1 {
                for px in x0..x1 {
                    let d =
                        dist_to_segment(f64::from(px) + 0.5, f64::from(py) + 0.5, ax, ay, bx, by);
                    let cov = (hw + 0.5 - d).clamp(0.0, 1.0) as f32;
                    if cov > 0.0 {
                        let i = (py - by0) as usize * mw + (px - bx0) as usize;
                        if mask[i] < cov {
                            mask[i] = cov;
                        }
                    }
                }
            }
        };
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in points {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            match prev {
                Some((px, py)) => stamp(px, py, x, y),
                // A lone point still shows as a dot.
                None => stamp(x, y, x, y),
            }
            prev = Some((x, y));
        }
        for j in 0..mh {
            for i in 0..mw {
                let a = mask[j * mw + i];
                if a > 0.0 {
                    self.blend(bx0 + i as i32, by0 + j as i32, c, a);
                }
            }
        }
    }

    /// An antialiased filled disc.
    pub fn disc(&mut self, cx: f64, cy: f64, radius: f64, c: Color) {
        if !(cx.is_finite() && cy.is_finite() && radius.is_finite()) || radius <= 0.0 {
            return;
        }
        let clip = self.clip;
        let x0 = ((cx - radius - 1.0).floor().max(f64::from(clip.x))) as i32;
        let x1 = ((cx + radius + 1.0).ceil().min(f64::from(clip.right()))) as i32;
        let y0 = ((cy - radius - 1.0).floor().max(f64::from(clip.y))) as i32;
        let y1 = ((cy + radius + 1.0).ceil().min(f64::from(clip.bottom()))) as i32;
        for py in y0..y1 {
            for px in x0..x1 {
                let d = (f64::from(px) + 0.5 - cx).hypot(f64::from(py) + 0.5 - cy);
                self.blend(px, py, c, (radius + 0.5 - d).clamp(0.0, 1.0) as f32);
            }
        }
    }

    /// Encodes the canvas as an 8-bit RGB PNG.
    pub fn to_png_bytes(&self) -> Result<Vec<u8>, PlotError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Best);
            let mut writer = enc.write_header()?;
            writer.write_image_data(&self.data)?;
            writer.finish()?;
        }
        Ok(out)
    }

    /// Writes the canvas to `path` as a PNG.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<(), PlotError> {
        let path = path.as_ref();
        let bytes = self.to_png_bytes()?;
        std::fs::write(path, bytes).map_err(|source| PlotError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Distance from point `(px, py)` to the segment `a-b`.
fn dist_to_segment(px: f64, py: f64, ax: f64, ay: f64, bx: f64, by: f64) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (px - (ax + t * dx)).hypot(py - (ay + t * dy))
}

/// Liang-Barsky: the part of segment `(x0, y0, x1, y1)` inside the box, if any.
fn clip_segment(
    seg: (f64, f64, f64, f64),
    xmin: f64,
    ymin: f64,
    xmax: f64,
    ymax: f64,
) -> Option<(f64, f64, f64, f64)> {
    let (x0, y0, x1, y1) = seg;
    let (dx, dy) = (x1 - x0, y1 - y0);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, x0 - xmin),
        (dx, xmax - x0),
        (-dy, y0 - ymin),
        (dy, ymax - y0),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                if r > t1 {
                    return None;
                }
                t0 = t0.max(r);
            } else {
                if r < t0 {
                    return None;
                }
                t1 = t1.min(r);
            }
        }
    }
    let out = (x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy);
    (out.0.is_finite() && out.1.is_finite() && out.2.is_finite() && out.3.is_finite())
        .then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_sizes() {
        assert!(Canvas::new(0, 10, Color::WHITE).is_err());
        assert!(Canvas::new(10, MAX_SIDE + 1, Color::WHITE).is_err());
        assert!(Canvas::new(1, 1, Color::WHITE).is_ok());
    }

    #[test]
    fn primitives_clip_without_panicking() {
        let mut c = Canvas::new(20, 10, Color::WHITE).unwrap();
        c.fill_rect(Rect::new(-5, -5, 100, 100), Color::BLACK);
        c.fill_rect(
            Rect::new(i32::MAX - 1, i32::MIN, i32::MAX, i32::MAX),
            Color::BLACK,
        );
        c.hline(i32::MIN, i32::MAX, 3, Color::GRID);
        c.dashed_hline(i32::MIN + 1, i32::MAX - 1, 4, 3, 3, Color::GRID);
        c.dashed_vline(2, -1000, 1000, 3, 3, Color::GRID);
        c.line(-1e300, -1e300, 1e300, 1e300, 2.0, Color::BLACK);
        c.line(f64::NAN, 0.0, 5.0, 5.0, 2.0, Color::BLACK);
        c.polyline(
            &[(0.0, 0.0), (f64::INFINITY, 1.0), (3.0, 3.0)],
            f64::NAN,
            Color::BLACK,
        );
        c.disc(5.0, 5.0, 1e9, Color::BLACK);
        c.disc(f64::NAN, 5.0, 3.0, Color::BLACK);
        c.put(-1, -1, Color::BLACK);
        assert_eq!(c.pixel(-1, 0), None);
    }

    #[test]
    fn horizontal_line_is_solid_in_the_middle() {
        let mut c = Canvas::new(30, 30, Color::WHITE).unwrap();
        c.line(2.0, 15.0, 28.0, 15.0, 2.0, Color::BLACK);
        assert_eq!(c.pixel(15, 14), Some(Color::BLACK));
        assert_eq!(c.pixel(15, 15), Some(Color::BLACK));
        assert_eq!(c.pixel(15, 12), Some(Color::WHITE));
    }

    #[test]
    fn clip_rect_is_respected() {
        let mut c = Canvas::new(30, 30, Color::WHITE).unwrap();
        c.set_clip(Some(Rect::new(10, 10, 10, 10)));
        c.fill_rect(Rect::new(0, 0, 30, 30), Color::BLACK);
        c.line(0.0, 0.0, 30.0, 30.0, 3.0, Color::BLACK);
        assert_eq!(c.pixel(5, 5), Some(Color::WHITE));
        assert_eq!(c.pixel(15, 15), Some(Color::BLACK));
        c.set_clip(None);
        c.put(5, 5, Color::BLACK);
        assert_eq!(c.pixel(5, 5), Some(Color::BLACK));
    }
}
