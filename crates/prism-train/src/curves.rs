//! Training curves of a run folder as `curves.png`: losses, learning rate, validation mAP and
//! throughput against the step, drawn from `metrics.jsonl`.

use std::path::Path;

use prism_plot::Figure;

use crate::metrics_log::{read, Record};

/// Why the curves could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CurvesError {
    #[error("reading {}: {source}", path.display())]
    Log {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] prism_plot::PlotError),
}

/// What a run's validation and throughput panels say.
#[derive(Debug, Clone, Copy)]
pub struct CurveLabels {
    pub validation: &'static str,
    pub throughput: &'static str,
}

/// RVT runs: the Prophesee protocol, windows per second.
pub const EVENT_RUN: CurveLabels = CurveLabels {
    validation: "validation (Prophesee protocol)",
    throughput: "windows / s",
};

/// Frame-detector runs: COCO on the validation images, images per second.
pub const FRAME_RUN: CurveLabels = CurveLabels {
    validation: "validation (COCO, letterboxed images)",
    throughput: "images / s",
};

/// Draws `run_dir/curves.png` from `run_dir/metrics.jsonl` (an RVT run).
pub fn draw(run_dir: &Path) -> Result<(), CurvesError> {
    draw_labelled(run_dir, EVENT_RUN)
}

/// Draws `run_dir/curves.png` with the given panel labels.
pub fn draw_labelled(run_dir: &Path, labels: CurveLabels) -> Result<(), CurvesError> {
    let path = run_dir.join("metrics.jsonl");
    let records = read(&path).map_err(|source| CurvesError::Log { path, source })?;
    let mut steps = Vec::new();
    let (mut total, mut iou, mut obj, mut cls, mut lr, mut speed) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut val_steps, mut ap50, mut map) = (vec![], vec![], vec![]);
    for r in &records {
        match r {
            Record::Train(s) => {
                steps.push(s.step as f64);
                total.push(s.loss as f64);
                iou.push(s.iou as f64);
                obj.push(s.obj as f64);
                cls.push(s.cls as f64);
                lr.push(s.lr);
                speed.push(s.windows_per_s);
            }
            Record::Val(v) => {
                val_steps.push(v.step as f64);
                ap50.push(v.ap50);
                map.push(v.map);
            }
        }
    }
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut fig = Figure::new(1400, 900)
        .grid(2, 2)
        .title(&format!("training: {name}"));
    fig.panel(0)
        .title("loss (5 x iou + obj + cls)")
        .x_label("step")
        .y_log(true)
        .line("total", &steps, &smooth(&total))
        .line("5 x iou", &steps, &smooth(&iou))
        .line("obj", &steps, &smooth(&obj))
        .line("cls", &steps, &smooth(&cls));
    fig.panel(1)
        .title("learning rate")
        .x_label("step")
        .y_log(true)
        .line("lr", &steps, &lr);
    fig.panel(2)
        .title(labels.validation)
        .x_label("step")
        .y_range(0.0, 1.0)
        .line_markers("mAP@.5", &val_steps, &ap50)
        .line_markers("mAP@[.5:.95]", &val_steps, &map);
    fig.panel(3)
        .title("throughput")
        .x_label("step")
        .y_label(labels.throughput)
        .line("train", &steps, &smooth(&speed));
    Ok(fig.save_png(run_dir.join("curves.png"))?)
}

/// Exponential moving average (0.9) so noisy per-step values read as a curve.
fn smooth(values: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let mut acc: Option<f64> = None;
    for &v in values {
        let next = match acc {
            Some(a) if v.is_finite() => 0.9 * a + 0.1 * v,
            _ => v,
        };
        acc = next.is_finite().then_some(next);
        out.push(next);
    }
    out
}
