//! The peak resident memory of one training step on the CPU, read from Linux's `/proc`.
//!
//! Linux keeps a process's peak resident set (`VmHWM` in `/proc/self/status`) and resets it to
//! the current resident size when `5` is written to `/proc/self/clear_refs`; reset before a step
//! and read after it, it is that step's peak. Written by hand because it is two file accesses
//! (the crates that read `/proc` expose the counter but not the reset). Elsewhere (not Linux,
//! or a `/proc` that refuses the reset) there is no per-step figure and the log leaves it out.

use std::fs;

/// A step's peak-memory measurement, started by [`StepPeak::start`].
#[derive(Debug, Clone, Copy)]
pub struct StepPeak {
    reset: bool,
}

impl StepPeak {
    /// Resets the process's peak resident size to its current size.
    pub fn start() -> Self {
        Self {
            reset: fs::write("/proc/self/clear_refs", "5").is_ok(),
        }
    }

    /// The peak resident size since [`Self::start`], in MiB; `None` where it cannot be told.
    pub fn peak_mib(self) -> Option<f64> {
        if !self.reset {
            return None;
        }
        peak_resident_kib().map(|kib| kib as f64 / 1024.0)
    }
}

/// `VmHWM` of `/proc/self/status`, in KiB.
fn peak_resident_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_line_is_read_and_a_bad_status_is_none() {
        let status = "Name:\tprism\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12345));
        assert_eq!(parse_vm_hwm("VmRSS:\t100 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\tlots kB\n"), None);
    }

    #[test]
    fn a_step_that_allocates_shows_in_its_peak_and_the_next_step_starts_lower() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let step = StepPeak::start();
        let Some(before) = step.peak_mib() else {
            return; // a /proc that refuses the reset: no per-step figure, nothing to check
        };
        // 256 MiB touched page by page, then freed (glibc returns a block this large to the
        // system at once).
        let mut block = vec![0u8; 256 << 20];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&block);
        let during = step.peak_mib().unwrap();
        drop(block);
        assert!(during >= before + 250.0, "{before} -> {during} MiB");
        let next = StepPeak::start().peak_mib().unwrap();
        assert!(next < during - 200.0, "the reset: {during} -> {next} MiB");
    }
}
