//! Grouped horizontal bar charts, for benchmark numbers: one group per model or
//! setting, one labelled bar per runtime, the value printed at the end of each bar.

use std::path::Path;

use crate::canvas::{Canvas, Rect};
use crate::color::{palette, Color};
use crate::error::PlotError;
use crate::figure::PlotValue;
use crate::font::TextStyle;
use crate::scale::Scale;
use crate::ticks;

#[derive(Clone, Debug)]
struct Group {
    name: String,
    bars: Vec<(String, f64)>,
}

/// A grouped horizontal bar chart. Builder methods take and return `self`.
///
/// Bars with the same label get the same colour in every group. NaN, infinite (and,
/// on a log axis, non-positive) values draw no bar and print `n/a`.
///
/// ```
/// use prism_plot::BarChart;
/// let chart = BarChart::new("rvt-tiny-gen1, ms per window (lower is better)")
///     .x_label("ms per window")
///     .unit(" ms")
///     .group("tiny-gen1", &[("burn flex", 99.9), ("tract", 88.3), ("ort", 27.1), ("peer", 24.9)]);
/// let png = chart.to_png_bytes().unwrap();
/// assert!(png.starts_with(b"\x89PNG"));
/// ```
#[derive(Clone, Debug)]
pub struct BarChart {
    title: String,
    x_label: String,
    unit: String,
    groups: Vec<Group>,
    width: u32,
    height: Option<u32>,
    x_log: bool,
    text_scale: i32,
    colors: Vec<(String, Color)>,
}

impl BarChart {
    /// An empty chart, 1000 pixels wide, its height fitted to the bars.
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            x_label: String::new(),
            unit: String::new(),
            groups: Vec::new(),
            width: 1000,
            height: None,
            x_log: false,
            text_scale: 2,
            colors: Vec::new(),
        }
    }

    /// Adds a group of labelled bars, drawn top to bottom in the given order.
    pub fn group<L: AsRef<str>, V: PlotValue>(mut self, name: &str, bars: &[(L, V)]) -> Self {
        self.groups.push(Group {
            name: name.to_string(),
            bars: bars
                .iter()
                .map(|(l, v)| (l.as_ref().to_string(), v.to_f64()))
                .collect(),
        });
        self
    }

    /// Label under the value axis (e.g. "ms per window").
    pub fn x_label(mut self, t: &str) -> Self {
        self.x_label = t.to_string();
        self
    }

    /// Text appended to each printed value (e.g. `" ms"`).
    pub fn unit(mut self, u: &str) -> Self {
        self.unit = u.to_string();
        self
    }

    /// Image width in pixels (height still fitted to the bars).
    pub fn width(mut self, w: u32) -> Self {
        self.width = w;
        self
    }

    /// Fixed image size; bars are squeezed or stretched to fill the height.
    pub fn size(mut self, w: u32, h: u32) -> Self {
        self.width = w;
        self.height = Some(h);
        self
    }

    /// Log-10 value axis, for numbers spanning orders of magnitude (bars start at the
    /// left edge rather than at zero).
    pub fn x_log(mut self, on: bool) -> Self {
        self.x_log = on;
        self
    }

    /// Colour for every bar labelled `label` (others take the palette in order of first
    /// appearance).
    pub fn color(mut self, label: &str, c: Color) -> Self {
        self.colors.retain(|(l, _)| l != label);
        self.colors.push((label.to_string(), c));
        self
    }

    /// Text size: each font pixel becomes `scale x scale` pixels (default 2, clamped to 1..=8).
    pub fn text_scale(mut self, scale: u32) -> Self {
        self.text_scale = scale.clamp(1, 8) as i32;
        self
    }

    fn valid(&self, v: f64) -> bool {
        Scale::accepts(self.x_log, v)
    }

    fn value_text(&self, v: f64) -> String {
        if self.valid(v) {
            format!("{}{}", ticks::format_sig(v), self.unit)
        } else {
            "n/a".to_string()
        }
    }

    /// Colour per distinct label, in order of first appearance.
    fn color_for(&self, label: &str, labels: &[&str]) -> Color {
        if let Some((_, c)) = self.colors.iter().find(|(l, _)| l == label) {
            return *c;
        }
        palette(labels.iter().position(|l| *l == label).unwrap_or(0))
    }

    fn scale(&self) -> Scale {
        let values = self
            .groups
            .iter()
            .flat_map(|g| g.bars.iter().map(|b| b.1))
            .filter(|&v| self.valid(v));
        if self.x_log {
            return Scale::fit(values, true, None, 0.04);
        }
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let span = hi - lo;
        if !(span.is_finite() && span > 0.0) {
            return Scale::fit([lo, hi], false, None, 0.0);
        }
        // Pad only the side away from zero so bars start exactly at the axis.
        let hi = if hi > 0.0 { hi + span * 0.04 } else { hi };
        let lo = if lo < 0.0 { lo - span * 0.04 } else { lo };
        Scale::fit([lo, hi], false, Some((lo, hi)), 0.0)
    }

    /// Draws the chart.
    pub fn render(&self) -> Result<Canvas, PlotError> {
        let s = self.text_scale;
        let pad = 4 * s;
        let title_st = TextStyle::new(s + 1, Color::TEXT).bold();
        let group_st = TextStyle::new(s, Color::TEXT).bold();
        let label_st = TextStyle::new(s, Color::TEXT);
        let tick_st = TextStyle::new(s, Color::TEXT_DIM);
        let lh = label_st.line_height();
        let tick_len = 2 * s;

        // Fixed vertical parts; rows in "natural" pixels: a group header then its bars.
        let title_h = if self.title.is_empty() {
            0
        } else {
            title_st.line_height() + pad
        };
        let axis_h = tick_len + s + lh + if self.x_label.is_empty() { 0 } else { lh };
        let (header, pitch) = (f64::from(lh + 5 * s), f64::from(11 * s));
        let n_bars: usize = self.groups.iter().map(|g| g.bars.len()).sum();
        let natural = header * self.groups.len() as f64 + pitch * n_bars as f64 + f64::from(s);
        let fixed = f64::from(pad + title_h + axis_h + pad);
        let height = match self.height {
            Some(h) => h,
            None => (fixed + natural.max(f64::from(3 * lh)))
                .ceil()
                .min(f64::from(u32::MAX)) as u32,
        };
        let mut canvas = Canvas::new(self.width, height, Color::WHITE)?;
        let (w, h) = (self.width as i32, height as i32);

        if !self.title.is_empty() {
            let t = title_st.fit(&self.title, w - 2 * pad);
            title_st.draw_centered(&mut canvas, w / 2, pad, &t);
        }
        let rows_top = pad + title_h;
        let rows_bottom = h - pad - axis_h;
        let k = if natural > 0.0 {
            f64::from(rows_bottom - rows_top).max(0.0) / natural
        } else {
            1.0
        };

        // Horizontal layout: labels | bars | values.
        let indent = 2 * label_st.width("x");
        let labels_w = self
            .groups
            .iter()
            .flat_map(|g| g.bars.iter())
            .map(|(l, _)| label_st.width(l))
            .max()
            .unwrap_or(0)
            .min(w * 2 / 5);
        let values_w = self
            .groups
            .iter()
            .flat_map(|g| g.bars.iter())
            .map(|&(_, v)| label_st.width(&self.value_text(v)))
            .max()
            .unwrap_or(0)
            .min(w / 4);
        let bar_left = pad + indent + labels_w + 2 * s;
        let bar_right = w - pad - values_w - 3 * s;
        let plot = Rect::new(
            bar_left,
            rows_top,
            bar_right - bar_left,
            rows_bottom - rows_top,
        );
        if plot.w < 4 * lh || plot.h < 1 {
            return Ok(canvas);
        }
        let sc = self.scale();
        let px = |v: f64| sc.px(v, f64::from(plot.x), f64::from(plot.right() - 1));
        let x_ticks = sc.ticks_fitting(plot.w, &tick_st);

        // Grid and value axis.
        let axis_y = plot.bottom();
        for t in &x_ticks {
            if let Some(x) = px(t.value) {
                let x = x.round() as i32;
                canvas.dashed_vline(x, plot.y, axis_y - 1, 4, 4, Color::GRID);
                canvas.vline(x, axis_y, axis_y + tick_len - 1, Color::AXIS);
                tick_st.draw_centered(&mut canvas, x, axis_y + tick_len + s, &t.label);
            }
        }
        canvas.hline(plot.x, plot.right() - 1, axis_y, Color::AXIS);
        if !self.x_label.is_empty() {
            let t = label_st.fit(&self.x_label, w - 2 * pad);
            label_st.draw_centered(
                &mut canvas,
                plot.x + plot.w / 2,
                axis_y + tick_len + s + lh,
                &t,
            );
        }
        let base = if sc.log {
            Some(f64::from(plot.x))
        } else {
            px(0.0)
        };
        if self.groups.is_empty() {
            let note = TextStyle::new(s, Color::AXIS);
            note.draw_centered(
                &mut canvas,
                plot.x + plot.w / 2,
                plot.y + plot.h / 2 - lh / 2,
                "no data",
            );
        }

        // Rows.
        let mut labels: Vec<&str> = Vec::new();
        for g in &self.groups {
            for (l, _) in &g.bars {
                if !labels.contains(&l.as_str()) {
                    labels.push(l);
                }
            }
        }
        let mut y = f64::from(rows_top);
        let text_off =
            |row_h: f64| ((row_h - f64::from(label_st.cap_height())) / 2.0).round() as i32;
        for g in &self.groups {
            let hh = header * k;
            if hh >= f64::from(s) {
                let t = group_st.fit(&g.name, w - 2 * pad);
                group_st.draw(&mut canvas, pad, (y + hh) as i32 - lh, &t);
            }
            y += hh;
            for (label, v) in &g.bars {
                let ph = pitch * k;
                let (top, bottom) = (y + ph * 0.1, y + ph * 0.9);
                let ty = y as i32 + text_off(ph);
                let t = label_st.fit(label, labels_w);
                label_st.draw_right(&mut canvas, bar_left - 2 * s, ty, &t);
                let c = self.color_for(label, &labels);
                let end = if self.valid(*v) { px(*v) } else { None };
                match (base, end) {
                    (Some(b), Some(e)) => {
                        let (x0, x1) = (b.min(e).round() as i32, b.max(e).round() as i32);
                        let (y0, y1) = (
                            top.round() as i32,
                            (bottom.round() as i32).max(top.round() as i32 + 1),
                        );
                        canvas.set_clip(Some(Rect::new(plot.x, plot.y, plot.w, plot.h)));
                        canvas.fill_rect(Rect::new(x0, y0, (x1 - x0).max(1), y1 - y0), c);
                        canvas.set_clip(None);
                        let vt = self.value_text(*v);
                        let at = if *v >= 0.0 || sc.log {
                            x1.min(plot.right()) + 3 * s
                        } else {
                            b.round() as i32 + 3 * s
                        };
                        label_st.draw(&mut canvas, at, ty, &vt);
                    }
                    _ => {
                        let at = base.map_or(plot.x, |b| b.round() as i32) + 2 * s;
                        TextStyle::new(s, Color::AXIS).draw(&mut canvas, at, ty, "n/a");
                    }
                }
                y += ph;
            }
        }
        // The zero line on top of the bars.
        if let (false, Some(b)) = (sc.log, base) {
            canvas.vline(b.round() as i32, plot.y, axis_y, Color::AXIS);
        }
        Ok(canvas)
    }

    /// The chart as PNG bytes.
    pub fn to_png_bytes(&self) -> Result<Vec<u8>, PlotError> {
        self.render()?.to_png_bytes()
    }

    /// Writes the chart to `path` as a PNG.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<(), PlotError> {
        self.render()?.save_png(path)
    }
}
