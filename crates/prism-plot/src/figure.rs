//! Line charts: a [`Figure`] holds a grid of [`Panel`]s, each with line series against
//! a shared x axis (training step, say), optional log scales, a legend and labels.

use std::path::Path;

use crate::canvas::{Canvas, Rect};
use crate::color::{palette, Color};
use crate::error::PlotError;
use crate::font::TextStyle;
use crate::scale::Scale;

/// Most panels a figure holds; larger indices address the last one.
pub const MAX_PANELS: usize = 64;

/// Numbers that can be plotted: converted to `f64` (integers above 2^53 lose precision).
pub trait PlotValue: Copy {
    /// The value as `f64`.
    fn to_f64(self) -> f64;
}

macro_rules! plot_value {
    ($($t:ty),*) => {$(
        impl PlotValue for $t {
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn to_f64(self) -> f64 { self as f64 }
        }
    )*};
}
plot_value!(f32, f64, i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

/// One named series of `(x, y)` points and how to draw it.
///
/// Points where `x` or `y` is NaN or infinite (or not positive on a log axis) are
/// skipped and break the line; `xs` and `ys` of different lengths are cut to the shorter.
#[derive(Clone, Debug)]
pub struct Series {
    name: String,
    xs: Vec<f64>,
    ys: Vec<f64>,
    color: Option<Color>,
    width: f64,
    markers: bool,
    line: bool,
}

impl Series {
    /// A solid 2-pixel line through `(xs[i], ys[i])`, coloured from the palette.
    pub fn new<X: PlotValue, Y: PlotValue>(name: &str, xs: &[X], ys: &[Y]) -> Self {
        let n = xs.len().min(ys.len());
        Self {
            name: name.to_string(),
            xs: xs[..n].iter().map(|v| v.to_f64()).collect(),
            ys: ys[..n].iter().map(|v| v.to_f64()).collect(),
            color: None,
            width: 2.0,
            markers: false,
            line: true,
        }
    }

    /// Overrides the palette colour.
    pub fn color(mut self, c: Color) -> Self {
        self.color = Some(c);
        self
    }

    /// Line width in pixels (default 2; clamped to `0.5..=20`).
    pub fn width(mut self, px: f64) -> Self {
        self.width = if px.is_finite() {
            px.clamp(0.5, 20.0)
        } else {
            2.0
        };
        self
    }

    /// Draws a dot at every point (useful for sparse series such as validation runs).
    pub fn markers(mut self, on: bool) -> Self {
        self.markers = on;
        self
    }

    /// Draws the connecting line (default on; turn off for a scatter plot).
    pub fn line(mut self, on: bool) -> Self {
        self.line = on;
        self
    }

    /// Valid points as (x, y) pairs, NaN where the axes cannot show the point.
    fn pairs(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.xs.iter().copied().zip(self.ys.iter().copied())
    }
}

/// Where a panel's legend goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Legend {
    /// The inside corner that hides the fewest data points (default).
    #[default]
    Auto,
    /// Inside, top left.
    TopLeft,
    /// Inside, top right.
    TopRight,
    /// Inside, left, vertically centred.
    CenterLeft,
    /// Inside, right, vertically centred.
    CenterRight,
    /// Inside, bottom left.
    BottomLeft,
    /// Inside, bottom right.
    BottomRight,
    /// No legend.
    Hidden,
}

/// One chart in a [`Figure`]: axes, labels and series. Builder methods chain on `&mut`.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    title: String,
    x_label: String,
    y_label: String,
    x_log: bool,
    y_log: bool,
    x_range: Option<(f64, f64)>,
    y_range: Option<(f64, f64)>,
    legend: Legend,
    series: Vec<Series>,
}

impl Panel {
    /// A panel with no series.
    pub fn new() -> Self {
        Self::default()
    }

    /// Title drawn above the plot.
    pub fn title(&mut self, t: &str) -> &mut Self {
        self.title = t.to_string();
        self
    }

    /// Label under the x axis.
    pub fn x_label(&mut self, t: &str) -> &mut Self {
        self.x_label = t.to_string();
        self
    }

    /// Label left of the y axis (drawn upwards).
    pub fn y_label(&mut self, t: &str) -> &mut Self {
        self.y_label = t.to_string();
        self
    }

    /// Log-10 x axis; points with `x <= 0` are skipped.
    pub fn x_log(&mut self, on: bool) -> &mut Self {
        self.x_log = on;
        self
    }

    /// Log-10 y axis (losses, learning rates); points with `y <= 0` are skipped.
    pub fn y_log(&mut self, on: bool) -> &mut Self {
        self.y_log = on;
        self
    }

    /// Fixes the x range instead of fitting it to the data (ignored unless `lo < hi`,
    /// both finite, and positive on a log axis). Points outside are clipped.
    pub fn x_range(&mut self, lo: f64, hi: f64) -> &mut Self {
        self.x_range = Some((lo, hi));
        self
    }

    /// Fixes the y range (e.g. `0.0..1.0` for mAP); same rules as [`Panel::x_range`].
    pub fn y_range(&mut self, lo: f64, hi: f64) -> &mut Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// Legend placement (default [`Legend::Auto`]). Series with empty names are not listed.
    pub fn legend(&mut self, at: Legend) -> &mut Self {
        self.legend = at;
        self
    }

    /// Adds a solid line series.
    pub fn line<X: PlotValue, Y: PlotValue>(
        &mut self,
        name: &str,
        xs: &[X],
        ys: &[Y],
    ) -> &mut Self {
        self.series(Series::new(name, xs, ys))
    }

    /// Adds a line series with a dot at every point.
    pub fn line_markers<X: PlotValue, Y: PlotValue>(
        &mut self,
        name: &str,
        xs: &[X],
        ys: &[Y],
    ) -> &mut Self {
        self.series(Series::new(name, xs, ys).markers(true))
    }

    /// Adds dots only, no line.
    pub fn scatter<X: PlotValue, Y: PlotValue>(
        &mut self,
        name: &str,
        xs: &[X],
        ys: &[Y],
    ) -> &mut Self {
        self.series(Series::new(name, xs, ys).markers(true).line(false))
    }

    /// Adds a fully configured series.
    pub fn series(&mut self, s: Series) -> &mut Self {
        self.series.push(s);
        self
    }

    fn color_of(&self, i: usize) -> Color {
        self.series
            .get(i)
            .and_then(|s| s.color)
            .unwrap_or_else(|| palette(i))
    }

    /// Draws the panel into `cell` of `canvas` with text at `scale`.
    fn render(&self, canvas: &mut Canvas, cell: Rect, scale: i32) {
        let s = scale.max(1);
        let pad = 4 * s;
        let tick_len = 2 * s;
        let title_st = TextStyle::new(s, Color::TEXT).bold();
        let label_st = TextStyle::new(s, Color::TEXT);
        let tick_st = TextStyle::new(s, Color::TEXT_DIM);
        let lh = label_st.line_height();

        // Ranges from the points both axes can show.
        let valid = |x: f64, y: f64| Scale::accepts(self.x_log, x) && Scale::accepts(self.y_log, y);
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.pairs())
                .filter(|&(x, y)| valid(x, y))
        };
        let has_data = points().next().is_some();
        let xs = Scale::fit(points().map(|p| p.0), self.x_log, self.x_range, 0.02);
        let ys = Scale::fit(points().map(|p| p.1), self.y_log, self.y_range, 0.06);

        // Vertical layout.
        let mut top = cell.y + pad;
        if !self.title.is_empty() {
            top += lh + pad / 2;
        }
        let plot_top = top + lh / 2;
        let mut bottom = cell.bottom() - pad;
        if !self.x_label.is_empty() {
            bottom -= lh;
        }
        let plot_bottom = bottom - lh - tick_len - 3 * s;
        let plot_h = plot_bottom - plot_top;

        // Title first, so even a too-small cell shows what it is.
        if !self.title.is_empty() {
            let t = title_st.fit(&self.title, cell.w - 2 * pad);
            title_st.draw_centered(canvas, cell.x + cell.w / 2, cell.y + pad, &t);
        }
        if plot_h < 2 * lh || cell.w < 12 * lh {
            return;
        }

        // Horizontal layout: the y tick labels decide the left margin.
        let y_ticks = ys.ticks(((plot_h / (lh * 3)) as usize).clamp(2, 8));
        let y_tick_w = y_ticks
            .iter()
            .map(|t| tick_st.width(&t.label))
            .max()
            .unwrap_or(0);
        let mut left = cell.x + pad;
        if !self.y_label.is_empty() {
            left += lh + pad / 2;
        }
        let plot_left = left + y_tick_w + s + tick_len;
        let plot_right = cell.right() - pad - 3 * lh / 2;
        let plot_w = plot_right - plot_left;
        if plot_w < 4 * lh {
            return;
        }
        let plot = Rect::new(plot_left, plot_top, plot_w, plot_h);
        let x_ticks = xs.ticks_fitting(plot_w, &tick_st);

        // Pixel mapping: pixel centres of the frame are the range ends.
        let px = |v: f64| xs.px(v, f64::from(plot.x) + 0.5, f64::from(plot.right()) - 0.5);
        let py = |v: f64| ys.px(v, f64::from(plot.bottom()) - 0.5, f64::from(plot.y) + 0.5);

        // Grid, frame, ticks.
        for t in &x_ticks {
            if let Some(x) = px(t.value) {
                let x = x.floor() as i32;
                canvas.dashed_vline(x, plot.y + 1, plot.bottom() - 2, 4, 4, Color::GRID);
                canvas.vline(x, plot.bottom(), plot.bottom() + tick_len - 1, Color::AXIS);
                tick_st.draw_centered(canvas, x, plot.bottom() + tick_len + s, &t.label);
            }
        }
        for t in &y_ticks {
            if let Some(y) = py(t.value) {
                let y = y.floor() as i32;
                canvas.dashed_hline(plot.x + 1, plot.right() - 2, y, 4, 4, Color::GRID);
                canvas.hline(plot.x - tick_len, plot.x - 1, y, Color::AXIS);
                tick_st.draw_right(
                    canvas,
                    plot.x - tick_len - s,
                    y - tick_st.cap_height() / 2,
                    &t.label,
                );
            }
        }
        canvas.stroke_rect(plot, Color::AXIS);

        // Axis labels.
        if !self.x_label.is_empty() {
            let t = label_st.fit(&self.x_label, cell.w - 2 * pad);
            label_st.draw_centered(canvas, plot.x + plot.w / 2, bottom, &t);
        }
        if !self.y_label.is_empty() {
            let t = label_st.fit(&self.y_label, plot.h);
            let w = label_st.width(&t);
            label_st.draw_up(canvas, cell.x + pad, plot.y + (plot.h - w) / 2, &t);
        }

        // Series, clipped to the inside of the frame.
        let inner = plot.inset(1);
        canvas.set_clip(Some(inner));
        let mut projected: Vec<Vec<(f64, f64)>> = Vec::with_capacity(self.series.len());
        for (i, ser) in self.series.iter().enumerate() {
            let pts: Vec<(f64, f64)> = ser
                .pairs()
                .map(|(x, y)| match (px(x), py(y)) {
                    (Some(a), Some(b)) if valid(x, y) => (a, b),
                    _ => (f64::NAN, f64::NAN),
                })
                .collect();
            let c = self.color_of(i);
            if ser.line {
                canvas.polyline(&pts, ser.width, c);
            }
            let ok = |i: usize| {
                pts.get(i)
                    .is_some_and(|p| p.0.is_finite() && p.1.is_finite())
            };
            for (j, &(x, y)) in pts.iter().enumerate() {
                // Points with no valid neighbour would vanish in a line: give them a dot.
                let lone = !(ok(j + 1) || (j > 0 && ok(j - 1)));
                if ser.markers || !ser.line || lone {
                    canvas.disc(x, y, ser.width + 1.5, c);
                }
            }
            projected.push(pts);
        }
        canvas.set_clip(None);

        if !has_data {
            let note = TextStyle::new(s, Color::AXIS);
            note.draw_centered(
                canvas,
                plot.x + plot.w / 2,
                plot.y + plot.h / 2 - lh / 2,
                "no data",
            );
        }
        self.render_legend(canvas, inner, s, &projected);
    }

    fn render_legend(
        &self,
        canvas: &mut Canvas,
        area: Rect,
        s: i32,
        projected: &[Vec<(f64, f64)>],
    ) {
        if self.legend == Legend::Hidden {
            return;
        }
        let st = TextStyle::new(s, Color::TEXT);
        let entries: Vec<(usize, String)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, ser)| !ser.name.is_empty())
            .map(|(i, ser)| (i, crate::font::truncate(&ser.name, 28)))
            .take(32)
            .collect();
        if entries.is_empty() {
            return;
        }
        let lh = st.line_height();
        let pad = 3 * s;
        let swatch = 10 * s;
        let label_w = entries.iter().map(|(_, t)| st.width(t)).max().unwrap_or(0);
        let w = (pad + swatch + 2 * s + pad / 2 + label_w + pad).min(area.w - 2 * pad);
        let h = (2 * pad + lh * (entries.len() as i32 - 1) + crate::font::GLYPH_H * s)
            .min(area.h - 2 * pad);
        if w < swatch + 2 * pad || h < lh {
            return;
        }
        let corner = |at: Legend| -> Rect {
            let (x, y) = match at {
                Legend::TopLeft => (area.x + pad, area.y + pad),
                Legend::CenterLeft => (area.x + pad, area.y + (area.h - h) / 2),
                Legend::CenterRight => (area.right() - pad - w, area.y + (area.h - h) / 2),
                Legend::BottomLeft => (area.x + pad, area.bottom() - pad - h),
                Legend::BottomRight => (area.right() - pad - w, area.bottom() - pad - h),
                _ => (area.right() - pad - w, area.y + pad),
            };
            Rect::new(x, y, w, h)
        };
        let rect = match self.legend {
            Legend::Auto => {
                let order = [
                    Legend::TopRight,
                    Legend::TopLeft,
                    Legend::BottomRight,
                    Legend::BottomLeft,
                    Legend::CenterRight,
                    Legend::CenterLeft,
                ];
                let mut best = (usize::MAX, Legend::TopRight);
                for at in order {
                    let n = hidden_samples(&corner(at).inset(-pad), projected);
                    if n < best.0 {
                        best = (n, at);
                    }
                }
                corner(best.1)
            }
            at => corner(at),
        };
        canvas.set_clip(Some(area));
        canvas.fill_rect(rect, Color::WHITE);
        canvas.stroke_rect(rect, Color::GRID.mix(Color::AXIS, 0.5));
        canvas.set_clip(Some(rect.inset(1)));
        for (row, (i, name)) in entries.iter().enumerate() {
            let ty = rect.y + pad + row as i32 * lh;
            let cy = f64::from(ty) + f64::from(st.cap_height()) / 2.0;
            let x0 = f64::from(rect.x + pad);
            let c = self.color_of(*i);
            let ser = &self.series[*i];
            if ser.line {
                canvas.line(
                    x0,
                    cy,
                    x0 + f64::from(swatch),
                    cy,
                    ser.width.max(2.0) + 1.0,
                    c,
                );
            }
            if ser.markers || !ser.line {
                canvas.disc(x0 + f64::from(swatch) / 2.0, cy, ser.width + 1.5, c);
            }
            st.draw(canvas, rect.x + pad + swatch + 2 * s + pad / 2, ty, name);
        }
        canvas.set_clip(None);
    }
}

/// How many sample points along the projected series fall inside `r`.
fn hidden_samples(r: &Rect, projected: &[Vec<(f64, f64)>]) -> usize {
    let inside = |x: f64, y: f64| {
        x >= f64::from(r.x)
            && x < f64::from(r.right())
            && y >= f64::from(r.y)
            && y < f64::from(r.bottom())
    };
    let mut n = 0;
    for pts in projected {
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
                continue;
            }
            // Sample roughly every 6 pixels so long straight segments count too.
            let k = ((x1 - x0).hypot(y1 - y0) / 6.0).ceil().clamp(1.0, 64.0) as usize;
            n += (0..k)
                .filter(|&j| {
                    let t = j as f64 / k as f64;
                    inside(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
                })
                .count();
        }
        n += pts.iter().filter(|&&(x, y)| inside(x, y)).count();
    }
    n
}

/// A grid of line-chart panels rendered into one image.
///
/// ```
/// use prism_plot::Figure;
/// let steps: Vec<u32> = (0..100).collect();
/// let loss: Vec<f64> = steps.iter().map(|&s| 2.0 / (1.0 + f64::from(s))).collect();
/// let mut fig = Figure::new(800, 400).grid(1, 2).title("run 42");
/// fig.panel(0).title("loss").x_label("step").y_log(true).line("total", &steps, &loss);
/// fig.panel(1).title("mAP").y_range(0.0, 1.0).line_markers("mAP@.5", &[10, 50, 99], &[0.2, 0.4, 0.5]);
/// let png = fig.to_png_bytes().unwrap();
/// assert!(png.starts_with(b"\x89PNG"));
/// ```
#[derive(Clone, Debug)]
pub struct Figure {
    width: u32,
    height: u32,
    rows: usize,
    cols: usize,
    title: String,
    text_scale: i32,
    panels: Vec<Panel>,
}

impl Figure {
    /// A `width x height` figure with a single panel (see [`Figure::grid`]).
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            rows: 1,
            cols: 1,
            title: String::new(),
            text_scale: 2,
            panels: vec![Panel::new()],
        }
    }

    /// Lays panels out in `rows x cols` cells, filled row by row (each at least 1, at most 8).
    /// More panels than cells add rows.
    pub fn grid(mut self, rows: usize, cols: usize) -> Self {
        self.rows = rows.clamp(1, 8);
        self.cols = cols.clamp(1, 8);
        let n = (self.rows * self.cols).max(self.panels.len());
        self.panels.resize_with(n, Panel::new);
        self
    }

    /// A title over the whole figure.
    pub fn title(mut self, t: &str) -> Self {
        self.title = t.to_string();
        self
    }

    /// Text size: each font pixel becomes `scale x scale` pixels (default 2, clamped to 1..=8).
    pub fn text_scale(mut self, scale: u32) -> Self {
        self.text_scale = scale.clamp(1, 8) as i32;
        self
    }

    /// The `i`-th panel (row-major), created if needed. Indices past [`MAX_PANELS`] - 1
    /// address the last panel.
    pub fn panel(&mut self, i: usize) -> &mut Panel {
        let i = i.min(MAX_PANELS - 1);
        if i >= self.panels.len() {
            self.panels.resize_with(i + 1, Panel::new);
        }
        &mut self.panels[i]
    }

    /// Draws the figure.
    pub fn render(&self) -> Result<Canvas, PlotError> {
        let mut canvas = Canvas::new(self.width, self.height, Color::WHITE)?;
        let s = self.text_scale;
        let (w, h) = (self.width as i32, self.height as i32);
        let mut top = 0;
        if !self.title.is_empty() {
            let st = TextStyle::new(s + 1, Color::TEXT).bold();
            let t = st.fit(&self.title, w - 8 * s);
            st.draw_centered(&mut canvas, w / 2, 4 * s, &t);
            top = 4 * s + st.line_height();
        }
        let cols = self.cols.max(1);
        let rows = self.rows.max(self.panels.len().div_ceil(cols)).max(1);
        let (cols_i, rows_i) = (cols as i32, rows as i32);
        for (i, p) in self.panels.iter().enumerate() {
            let (r, c) = ((i / cols) as i32, (i % cols) as i32);
            let x0 = w * c / cols_i;
            let x1 = w * (c + 1) / cols_i;
            let y0 = top + (h - top) * r / rows_i;
            let y1 = top + (h - top) * (r + 1) / rows_i;
            p.render(&mut canvas, Rect::new(x0, y0, x1 - x0, y1 - y0), s);
        }
        Ok(canvas)
    }

    /// The figure as PNG bytes.
    pub fn to_png_bytes(&self) -> Result<Vec<u8>, PlotError> {
        self.render()?.to_png_bytes()
    }

    /// Writes the figure to `path` as a PNG.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<(), PlotError> {
        self.render()?.save_png(path)
    }
}
