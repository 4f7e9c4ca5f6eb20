//! Progress of long commands (`infer`, `eval`): a bar with the time left on a terminal, and a
//! line every [`LINE_EVERY`] otherwise (logs, CI), so no run is silent for long.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is printed when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// Progress towards `total` units of work.
pub struct Meter {
    what: &'static str,
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Meter {
    /// A meter for `what` (`"infer"`, `"eval"`) over `total` units.
    pub fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{prefix} {bar:30.cyan/blue} {percent:>3}% {msg} [{elapsed_precise} < {eta_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(what);
            bar
        });
        let now = Instant::now();
        Self {
            what,
            bar,
            total,
            done: 0,
            started: now,
            last_line: now,
        }
    }

    /// Sets the work done so far; `message` says what it is (windows, detections).
    pub fn set(&mut self, done: u64, message: impl FnOnce() -> String) {
        self.done = done.min(self.total);
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done);
                bar.set_message(message());
            }
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}: {} {}", self.what, self.fraction_and_eta(), message());
            }
            None => {}
        }
    }

    /// Prints a line above the bar (or plainly).
    pub fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// `42% after 12 s, about 16 s left`.
    fn fraction_and_eta(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let fraction = if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        };
        let left = if fraction > 0.0 {
            elapsed / fraction - elapsed
        } else {
            f64::NAN
        };
        let eta = if left.is_finite() {
            format!("about {left:.0} s left")
        } else {
            "time left unknown".to_string()
        };
        format!("{:.0}% after {elapsed:.0} s, {eta},", 100.0 * fraction)
    }
}
