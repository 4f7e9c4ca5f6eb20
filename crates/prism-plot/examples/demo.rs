//! Writes two example charts to /tmp/prism-plot-examples/ (or the directory given as
//! the first argument): a 2x2 figure of fake-but-plausible training curves and a
//! benchmark bar chart, plus a sheet of the embedded font.
//!
//! `cargo run -p prism-plot --example demo [-- OUT_DIR]`

use std::path::PathBuf;

use prism_plot::font::TextStyle;
use prism_plot::{BarChart, Canvas, Color, Figure, PlotError};

/// A tiny deterministic noise source (xorshift), uniform in -1..1.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn main() -> Result<(), PlotError> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("/tmp/prism-plot-examples"), PathBuf::from);
    std::fs::create_dir_all(&dir).map_err(|source| PlotError::Io {
        path: dir.clone(),
        source,
    })?;

    let curves = dir.join("training_curves.png");
    training_curves().save_png(&curves)?;
    let bars = dir.join("bench_bars.png");
    bench_bars().save_png(&bars)?;
    let font = dir.join("font_sheet.png");
    font_sheet()?.save_png(&font)?;
    println!(
        "wrote {}\nwrote {}\nwrote {}",
        curves.display(),
        bars.display(),
        font.display()
    );
    Ok(())
}

/// Losses, learning rate, validation mAP and throughput of a made-up 20k-step run.
pub fn training_curves() -> Figure {
    let mut rng = Noise(0x9E37_79B9_7F4A_7C15);
    let steps: Vec<u32> = (0..=20_000).step_by(50).collect();
    let decay = |s: u32, a: f64, tau: f64, floor: f64| floor + a * (-f64::from(s) / tau).exp();
    let mut iou = Vec::new();
    let mut obj = Vec::new();
    let mut cls = Vec::new();
    for &s in &steps {
        iou.push(decay(s, 2.2, 3000.0, 0.55) * (1.0 + 0.08 * rng.next()));
        obj.push(decay(s, 1.6, 1500.0, 0.22) * (1.0 + 0.12 * rng.next()));
        cls.push(decay(s, 0.9, 5000.0, 0.08) * (1.0 + 0.10 * rng.next()));
    }
    let total: Vec<f64> = (0..steps.len()).map(|i| iou[i] + obj[i] + cls[i]).collect();

    // Linear warm-up to 2e-4 over 1k steps, then cosine decay to 2e-6.
    let lr: Vec<f64> = steps
        .iter()
        .map(|&s| {
            let s = f64::from(s);
            if s < 1000.0 {
                2e-4 * (s + 1.0) / 1000.0
            } else {
                let t = (s - 1000.0) / 19_000.0;
                2e-6 + 0.5 * (2e-4 - 2e-6) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        })
        .collect();

    let val_steps: Vec<u32> = (1..=10).map(|i| i * 2000).collect();
    let map50: Vec<f64> = val_steps
        .iter()
        .map(|&s| 0.62 - 0.5 * (-f64::from(s) / 5000.0).exp() + 0.01 * rng.next())
        .collect();
    let map5095: Vec<f64> = val_steps
        .iter()
        .map(|&s| 0.38 - 0.33 * (-f64::from(s) / 6000.0).exp() + 0.008 * rng.next())
        .collect();

    let thr_steps: Vec<u32> = steps.iter().copied().filter(|s| s % 200 == 0).collect();
    let train_thr: Vec<f64> = thr_steps.iter().map(|_| 46.0 + 2.5 * rng.next()).collect();
    let val_thr: Vec<f64> = thr_steps.iter().map(|_| 118.0 + 4.0 * rng.next()).collect();

    let mut fig = Figure::new(1400, 900)
        .grid(2, 2)
        .title("rvt-tiny-gen1: training run (fake data)");
    fig.panel(0)
        .title("loss")
        .x_label("step")
        .y_log(true)
        .line("total", &steps, &total)
        .line("iou", &steps, &iou)
        .line("obj", &steps, &obj)
        .line("cls", &steps, &cls);
    fig.panel(1)
        .title("learning rate")
        .x_label("step")
        .y_log(true)
        .line("lr", &steps, &lr);
    fig.panel(2)
        .title("validation mAP")
        .x_label("step")
        .y_range(0.0, 0.7)
        .line_markers("mAP@.5", &val_steps, &map50)
        .line_markers("mAP@[.5:.95]", &val_steps, &map5095);
    fig.panel(3)
        .title("throughput")
        .x_label("step")
        .y_label("windows / s")
        .line("train", &thr_steps, &train_thr)
        .line("val", &thr_steps, &val_thr);
    fig
}

/// Milliseconds per window for three models on four runtimes.
pub fn bench_bars() -> BarChart {
    BarChart::new("ms per window (lower is better)")
        .x_label("ms per window, batch 1, CPU")
        .unit(" ms")
        .group(
            "rvt-tiny-gen1",
            &[
                ("burn flex", 99.9),
                ("tract", 88.3),
                ("ort", 27.1),
                ("peer", 24.9),
            ],
        )
        .group(
            "rvt-small-gen1",
            &[
                ("burn flex", 171.4),
                ("tract", 149.0),
                ("ort", 45.6),
                ("peer", 41.2),
            ],
        )
        .group(
            "rvt-tiny-1mpx",
            &[
                ("burn flex", 312.0),
                ("tract", 268.5),
                ("ort", f64::NAN),
                ("peer", 80.3),
            ],
        )
}

/// Every printable ASCII character at scales 1, 2 and 4.
pub fn font_sheet() -> Result<Canvas, PlotError> {
    let chars: String = (32u8..=126).map(char::from).collect();
    let mut c = Canvas::new(1200, 330, Color::WHITE)?;
    let mut y = 8;
    for (scale, per_line) in [(1, 95), (2, 48), (4, 24)] {
        let st = TextStyle::new(scale, Color::TEXT);
        let v: Vec<char> = chars.chars().collect();
        for line in v.chunks(per_line) {
            st.draw(&mut c, 8, y, &line.iter().collect::<String>());
            y += st.line_height() + 2;
        }
        y += 8;
    }
    let st = TextStyle::new(2, Color::TEXT);
    st.draw(
        &mut c,
        8,
        y,
        "The quick brown fox jumps over the lazy dog: 0.05 1e-4 2.0e-4 1.2k mAP@[.5:.95]",
    );
    st.bold().draw(
        &mut c,
        8,
        y + 24,
        "Bold: loss / learning rate / validation mAP / throughput (windows/s)",
    );
    Ok(c)
}
