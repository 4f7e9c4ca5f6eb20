//! Charts as PNG, with no dependencies beyond the `png` encoder: training curves
//! (several line series against steps, log scales, a grid of panels) and grouped
//! horizontal bar charts for benchmarks.
//!
//! ```no_run
//! use prism_plot::{BarChart, Figure};
//! # fn main() -> Result<(), prism_plot::PlotError> {
//! let steps: Vec<u32> = (0..1000).step_by(10).collect();
//! let loss: Vec<f32> = steps.iter().map(|&s| 3.0 / (1.0 + s as f32 / 50.0)).collect();
//! let lr: Vec<f64> = steps.iter().map(|&s| 2e-4 * (1.0 - f64::from(s) / 1000.0)).collect();
//!
//! let mut fig = Figure::new(1200, 800).grid(2, 2).title("rvt-tiny-gen1");
//! fig.panel(0).title("loss").x_label("step").y_log(true).line("total", &steps, &loss);
//! fig.panel(1).title("learning rate").x_label("step").y_log(true).line("lr", &steps, &lr);
//! fig.save_png("/tmp/curves.png")?;
//!
//! BarChart::new("rvt-tiny-gen1, ms per window (lower is better)")
//!     .x_label("ms per window")
//!     .group("tiny-gen1", &[("burn flex", 99.9), ("tract", 88.3), ("ort", 27.1), ("peer", 24.9)])
//!     .save_png("/tmp/bars.png")?;
//! # Ok(())
//! # }
//! ```
//!
//! Text uses an embedded 5x7 bitmap font (printable ASCII) drawn at an integer scale;
//! series take the Okabe-Ito colour-blind-friendly palette. Bad input (empty series,
//! NaN/inf, non-positive values on log axes, all-equal values, absurd sizes or labels)
//! is skipped, padded or truncated: drawing never panics, and only image size and I/O
//! produce errors.

pub mod bars;
pub mod canvas;
pub mod color;
pub mod error;
pub mod figure;
pub mod font;
mod scale;
pub mod ticks;

pub use bars::BarChart;
pub use canvas::{Canvas, Rect, MAX_SIDE};
pub use color::{Color, PALETTE};
pub use error::PlotError;
pub use figure::{Figure, Legend, Panel, PlotValue, Series};
