//! The run's metrics log, `metrics.jsonl`: one JSON object per training step and per validation.
//! On resume, entries past the checkpoint's step are dropped so the curve continues without a
//! repeated or missing step.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub loss: f32,
    pub iou: f32,
    pub obj: f32,
    pub cls: f32,
    pub lr: f64,
    pub grad_norm: f64,
    pub num_fg: usize,
    pub num_gt: usize,
    pub windows_per_s: f64,
    pub elapsed_s: f64,
    /// The step's peak resident memory in MiB (CPU training on Linux; see [`crate::memory`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Learning rate of each `train.param_groups` entry, by prefix (absent without groups).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_lr: Vec<(String, f64)>,
    /// float16 training: the loss scale the step ran with ([`crate::precision::LossScaler`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
    /// float16 training: the step's gradients overflowed, so no update was made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// One validation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValRecord {
    pub step: usize,
    /// COCO mAP@[.5:.95].
    pub map: f64,
    pub ap50: f64,
    pub ap75: f64,
    pub elapsed_s: f64,
}

/// A line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train(StepRecord),
    Val(ValRecord),
}

impl Record {
    fn step(&self) -> usize {
        match self {
            Record::Train(r) => r.step,
            Record::Val(r) => r.step,
        }
    }
}

/// Appends records to `metrics.jsonl`, flushing each line.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    /// The validation kept at the resumed step, if one was logged there.
    resumed_validation: Option<ValRecord>,
}

impl MetricsLog {
    /// Opens the log in `run_dir`. With `keep_until = Some(step)` (a resume), the existing
    /// records up to and including `step` are kept and later ones dropped; with `None` the log
    /// starts empty.
    pub fn open(run_dir: &Path, keep_until: Option<usize>) -> std::io::Result<Self> {
        let path = run_dir.join("metrics.jsonl");
        let kept: Vec<Record> = match keep_until {
            Some(step) => read(&path)?
                .into_iter()
                .filter(|r| r.step() <= step)
                .collect(),
            None => Vec::new(),
        };
        // Rewrite atomically, then append.
        let tmp = run_dir.join(".metrics.jsonl.tmp");
        {
            let mut f = File::create(&tmp)?;
            for r in &kept {
                writeln!(
                    f,
                    "{}",
                    serde_json::to_string(r).map_err(std::io::Error::other)?
                )?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        let resumed_validation = kept.into_iter().rev().find_map(|r| match r {
            Record::Val(v) if Some(v.step) == keep_until => Some(v),
            _ => None,
        });
        Ok(Self {
            path,
            file,
            resumed_validation,
        })
    }

    /// The validation logged at the step a resumed log was kept until. A run resumed at its
    /// last step (stopped after training ended but before its caller used the result)
    /// reports this one instead of none.
    pub fn resumed_validation(&self) -> Option<ValRecord> {
        self.resumed_validation.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        writeln!(self.file, "{line}")?;
        self.file.flush()
    }
}

/// Reads a metrics log; a missing file is empty, a torn last line (killed mid-write) is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        if let Ok(r) = serde_json::from_str::<Record>(&line) {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: usize) -> Record {
        Record::Train(StepRecord {
            step,
            loss: 1.0,
            iou: 0.5,
            obj: 0.3,
            cls: 0.2,
            lr: 1e-3,
            grad_norm: 2.0,
            num_fg: 3,
            num_gt: 1,
            windows_per_s: 10.0,
            elapsed_s: step as f64,
            peak_rss_mib: None,
            group_lr: Vec::new(),
            loss_scale: None,
            skipped: false,
        })
    }

    #[test]
    fn resume_keeps_records_up_to_the_checkpoint_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), None).unwrap();
        for s in 0..10 {
            log.append(&step(s)).unwrap();
        }
        drop(log);
        // A killed writer leaves half a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("metrics.jsonl"))
            .unwrap();
        write!(f, "{{\"kind\":\"train\",\"st").unwrap();
        drop(f);
        let mut log = MetricsLog::open(dir.path(), Some(5)).unwrap();
        log.append(&step(6)).unwrap();
        let steps: Vec<usize> = read(log.path()).unwrap().iter().map(Record::step).collect();
        assert_eq!(steps, vec![0, 1, 2, 3, 4, 5, 6]);
    }
}
