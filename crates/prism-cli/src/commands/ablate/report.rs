//! The ablation's results table: one row per configuration (its seeds averaged, with their
//! spread), as Markdown, JSON and a PNG bar chart of mAP per split.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::experiment::{write_atomically, ExperimentResult};
use super::matrix::Variant;

/// A configuration's row: means over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub variant: Variant,
    pub seeds: Vec<u64>,
    /// Per split: (split, mean mAP, spread = max - min over seeds, mean AP50).
    pub splits: Vec<(String, f64, f64, f64)>,
    pub params: usize,
    pub fusion_params: usize,
    pub latency_ms: f64,
    pub train_s: f64,
}

impl Row {
    /// Mean `metric` on `split`.
    pub fn score(&self, split: &str, metric: &str) -> Option<f64> {
        self.splits
            .iter()
            .find(|s| s.0 == split)
            .map(|s| if metric == "ap50" { s.3 } else { s.1 })
    }
}

/// Groups results by configuration, in the order they first appear.
pub fn rows(results: &[ExperimentResult]) -> Vec<Row> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&ExperimentResult>> = BTreeMap::new();
    for r in results {
        let name = r.variant.name();
        if !groups.contains_key(&name) {
            order.push(name.clone());
        }
        groups.entry(name).or_default().push(r);
    }
    order
        .into_iter()
        .filter_map(|name| {
            let group = groups.remove(&name)?;
            let first = group.first()?;
            let n = group.len() as f64;
            let mean =
                |f: &dyn Fn(&ExperimentResult) -> f64| group.iter().map(|r| f(r)).sum::<f64>() / n;
            let splits = first
                .splits
                .iter()
                .map(|s| {
                    let maps: Vec<f64> = group
                        .iter()
                        .filter_map(|r| r.score(&s.split, "map"))
                        .collect();
                    let lo = maps.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = maps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let ap50 = mean(&|r| r.score(&s.split, "ap50").unwrap_or(f64::NAN));
                    (
                        s.split.clone(),
                        maps.iter().sum::<f64>() / maps.len().max(1) as f64,
                        hi - lo,
                        ap50,
                    )
                })
                .collect();
            Some(Row {
                name,
                variant: first.variant.clone(),
                seeds: group.iter().map(|r| r.seed).collect(),
                splits,
                params: first.params,
                fusion_params: first.fusion_params,
                latency_ms: mean(&|r| r.latency_ms),
                train_s: mean(&|r| r.train_s),
            })
        })
        .collect()
}

/// Writes `results.md`, `results.json` and `results.png` into `out`; returns the Markdown.
pub fn write(out: &Path, title: &str, results: &[ExperimentResult]) -> Result<String> {
    let rows = rows(results);
    let splits: Vec<String> = rows
        .first()
        .map(|r| r.splits.iter().map(|s| s.0.clone()).collect())
        .unwrap_or_default();
    let mut md = format!("# {title}\n\n");
    md.push_str(
        "mAP is COCO mAP@[.5:.95] (the mean over seeds, ± half the seed-to-seed range where \
         there are several); latency is the exported model in tract, batch 1, median ms per \
         image on the machine that ran it.\n\n",
    );
    md.push_str("| configuration | phase | fusion | stages | settings | seeds |");
    for s in &splits {
        md.push_str(&format!(" mAP {s} | AP50 {s} |"));
    }
    md.push_str(" params (M) | fusion params | latency (ms) | training (min) |\n|");
    md.push_str(&"---|".repeat(6 + 2 * splits.len() + 4));
    md.push('\n');
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |",
            r.name,
            r.variant.phase,
            r.variant.kind,
            if r.variant.stages.is_empty() {
                "-".to_string()
            } else {
                r.variant
                    .stages
                    .chars()
                    .map(String::from)
                    .collect::<Vec<_>>()
                    .join(",")
            },
            r.variant.settings(),
            r.seeds.len()
        ));
        for s in &splits {
            match r.splits.iter().find(|x| &x.0 == s) {
                Some((_, map, spread, ap50)) if r.seeds.len() > 1 => {
                    md.push_str(&format!(" {map:.3} ± {:.3} | {ap50:.3} |", spread / 2.0))
                }
                Some((_, map, _, ap50)) => md.push_str(&format!(" {map:.3} | {ap50:.3} |")),
                None => md.push_str(" - | - |"),
            }
        }
        md.push_str(&format!(
            " {:.2} | {} | {:.1} | {:.1} |\n",
            r.params as f64 / 1e6,
            r.fusion_params,
            r.latency_ms,
            r.train_s / 60.0
        ));
    }
    write_atomically(&out.join("results.md"), md.as_bytes())?;
    let json = serde_json::json!({ "title": title, "rows": rows, "runs": results });
    write_atomically(
        &out.join("results.json"),
        &serde_json::to_vec_pretty(&json)?,
    )?;
    if !rows.is_empty() {
        super::experiment::save_chart(
            &out.join("results.png"),
            &format!("{title}: mAP per split (higher is better)"),
            "COCO mAP@[.5:.95]",
            rows.iter().map(|r| {
                let bars = r.splits.iter().map(|s| (s.0.clone(), s.1)).collect();
                (r.name.clone(), bars)
            }),
        )?;
    }
    Ok(md)
}
