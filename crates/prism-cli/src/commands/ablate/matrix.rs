//! The experiment matrix of `prism ablate` (`models/mm-ablation.toml`): a base card, backbones,
//! seeds and baselines; phase 1 the fusion stage sets; phase 2 the hyperparameter grid on the
//! top k of phase 1, chosen from phase 1's results.

use std::path::Path;

use anyhow::{bail, Context, Result};
use prism_train::mm_config::MmTrainConfig;
use serde::{Deserialize, Serialize};

/// The matrix file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// The card every experiment starts from: its `[train]`, `[dataset]`, classes, input size.
    pub base: String,
    pub backbones: Vec<String>,
    #[serde(default = "seed_zero")]
    pub seeds: Vec<u64>,
    /// Overrides for every experiment, as `--set` takes them (`train.steps=400`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Single-stream baselines trained beside the fused models: `rgb`, `early`.
    #[serde(default)]
    pub baselines: Vec<String>,
    /// The split that ranks phase 1 (`val` or a test folder) and its metric (`map`, `ap50`).
    #[serde(default = "val")]
    pub rank_split: String,
    #[serde(default = "map")]
    pub rank_metric: String,
    pub phase1: Phase1,
    #[serde(default)]
    pub phase2: Option<Phase2>,
}

/// Stage sets per fusion block, as digits (`"23"` fuses stages 2 and 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase1 {
    #[serde(default)]
    pub cssa: Vec<String>,
    #[serde(default)]
    pub gaff: Vec<String>,
}

/// The grid tried on the best stage sets of phase 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase2 {
    /// Best phase-1 CSSA configurations that phase 2 tunes.
    #[serde(default)]
    pub cssa_top_k: usize,
    /// Best phase-1 GAFF configurations that phase 2 tunes.
    #[serde(default)]
    pub gaff_top_k: usize,
    #[serde(default)]
    pub cssa_threshold: Vec<f64>,
    #[serde(default)]
    pub gaff_se_reduction: Vec<usize>,
    #[serde(default)]
    pub gaff_shared: Vec<bool>,
    #[serde(default)]
    pub gaff_bottleneck: Vec<bool>,
}

fn seed_zero() -> Vec<u64> {
    vec![0]
}
fn val() -> String {
    "val".into()
}
fn map() -> String {
    "map".into()
}

/// One experiment's settings (a configuration; a seed makes it a run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub phase: u8,
    pub backbone: String,
    /// `rgb`, `early`, `cssa` or `gaff`.
    pub kind: String,
    /// Fusion stages as digits; empty for baselines.
    pub stages: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cssa_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaff_se_reduction: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaff_shared: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaff_bottleneck: Option<bool>,
}

/// A variant with its seed: one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub variant: Variant,
    pub seed: u64,
}

impl Variant {
    /// The architecture name (`mm-mit-b0-cssa-s23`).
    pub fn architecture(&self) -> String {
        match self.kind.as_str() {
            "rgb" | "early" => format!("mm-{}-{}", self.backbone, self.kind),
            kind => format!("mm-{}-{kind}-s{}", self.backbone, self.stages),
        }
    }

    /// A name for the configuration: the architecture and the settings that differ from the
    /// block's defaults (`mm-mit-b0-gaff-s23-se8-shared`).
    pub fn name(&self) -> String {
        let mut name = self.architecture();
        if let Some(t) = self.cssa_threshold {
            name.push_str(&format!("-t{t}"));
        }
        if let Some(r) = self.gaff_se_reduction {
            name.push_str(&format!("-se{r}"));
        }
        if self.gaff_shared == Some(true) {
            name.push_str("-shared");
        }
        if self.gaff_bottleneck == Some(true) {
            name.push_str("-bneck");
        }
        name
    }

    /// Settings other than stages, for the report.
    pub fn settings(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.cssa_threshold {
            parts.push(format!("threshold {t}"));
        }
        if let Some(r) = self.gaff_se_reduction {
            parts.push(format!("SE /{r}"));
        }
        if let Some(s) = self.gaff_shared {
            parts.push(if s { "shared" } else { "separate" }.to_string());
        }
        if let Some(b) = self.gaff_bottleneck {
            parts.push(if b { "bottleneck" } else { "direct" }.to_string());
        }
        if parts.is_empty() {
            "defaults".into()
        } else {
            parts.join(", ")
        }
    }
}

impl Experiment {
    /// The run folder's name.
    pub fn id(&self) -> String {
        format!("{}-seed{}", self.variant.name(), self.seed)
    }
}

impl Matrix {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let matrix: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        matrix
            .validate()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(matrix)
    }

    /// Checks the file's values and that every experiment makes a valid training config.
    pub fn validate(&self) -> Result<()> {
        if self.backbones.is_empty() || self.seeds.is_empty() {
            bail!("give at least one backbone and one seed");
        }
        if !["map", "ap50"].contains(&self.rank_metric.as_str()) {
            bail!("rank_metric {:?}: expected map or ap50", self.rank_metric);
        }
        for b in &self.baselines {
            if !["rgb", "early"].contains(&b.as_str()) {
                bail!("baseline {b:?}: expected rgb or early");
            }
        }
        // Every experiment must make a valid training config.
        for e in self.phase1_experiments() {
            self.config(&e)?;
        }
        Ok(())
    }

    /// Phase 1: the baselines and every stage set of every block, on every backbone and seed.
    pub fn phase1_experiments(&self) -> Vec<Experiment> {
        let mut variants = Vec::new();
        for backbone in &self.backbones {
            for kind in &self.baselines {
                variants.push(variant(1, backbone, kind, ""));
            }
            for stages in &self.phase1.cssa {
                variants.push(variant(1, backbone, "cssa", stages));
            }
            for stages in &self.phase1.gaff {
                variants.push(variant(1, backbone, "gaff", stages));
            }
        }
        self.with_seeds(variants)
    }

    /// Phase 2: the grid on `best` (phase-1 variants, best first), the top k per block.
    pub fn phase2_experiments(&self, best: &[Variant]) -> Vec<Experiment> {
        let Some(p2) = &self.phase2 else {
            return Vec::new();
        };
        let mut variants = Vec::new();
        for kind in ["cssa", "gaff"] {
            let top_k = if kind == "cssa" {
                p2.cssa_top_k
            } else {
                p2.gaff_top_k
            };
            for base in best.iter().filter(|v| v.kind == kind).take(top_k) {
                if kind == "cssa" {
                    for &t in &p2.cssa_threshold {
                        variants.push(Variant {
                            phase: 2,
                            cssa_threshold: Some(t),
                            ..base.clone()
                        });
                    }
                    continue;
                }
                for &se in &or_default(&p2.gaff_se_reduction, 4) {
                    for &shared in &or_default(&p2.gaff_shared, false) {
                        for &bneck in &or_default(&p2.gaff_bottleneck, false) {
                            if (se, shared, bneck) == (4, false, false) {
                                continue; // phase 1 trained the defaults
                            }
                            variants.push(Variant {
                                phase: 2,
                                gaff_se_reduction: Some(se),
                                gaff_shared: Some(shared),
                                gaff_bottleneck: Some(bneck),
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
        self.with_seeds(variants)
    }

    fn with_seeds(&self, variants: Vec<Variant>) -> Vec<Experiment> {
        variants
            .into_iter()
            .flat_map(|variant| {
                self.seeds.iter().map(move |&seed| Experiment {
                    variant: variant.clone(),
                    seed,
                })
            })
            .collect()
    }

    /// The training config of one experiment: the base card with the matrix's overrides, the
    /// experiment's architecture, fusion settings and seed.
    pub fn config(&self, e: &Experiment) -> Result<MmTrainConfig> {
        let mut config = MmTrainConfig::resolve(&self.base)
            .with_context(|| format!("the base card {:?}", self.base))?;
        config.apply_overrides(&self.set)?;
        let v = &e.variant;
        let m = &mut config.card.model;
        m.architecture = None;
        m.cssa_threshold = v.cssa_threshold;
        m.cssa_switch = None;
        m.cssa_temperature = None;
        m.gaff_se_reduction = v.gaff_se_reduction;
        m.gaff_shared = v.gaff_shared;
        m.gaff_bottleneck = v.gaff_bottleneck;
        config.card.name = v.architecture();
        config.train.seed = e.seed;
        config
            .card
            .detector_config()
            .with_context(|| format!("experiment {}", e.id()))?;
        Ok(config)
    }
}

fn variant(phase: u8, backbone: &str, kind: &str, stages: &str) -> Variant {
    Variant {
        phase,
        backbone: backbone.into(),
        kind: kind.into(),
        stages: stages.into(),
        cssa_threshold: None,
        gaff_se_reduction: None,
        gaff_shared: None,
        gaff_bottleneck: None,
    }
}

fn or_default<T: Copy>(values: &[T], default: T) -> Vec<T> {
    if values.is_empty() {
        vec![default]
    } else {
        values.to_vec()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_shipped_matrix_is_the_seeds_design() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/mm-ablation.toml");
        let m = Matrix::read(&path).unwrap();
        let p1 = m.phase1_experiments();
        let per_seed = |kind: &str| {
            p1.iter()
                .filter(|e| e.variant.kind == kind && e.seed == m.seeds[0])
                .count()
                / m.backbones.len()
        };
        assert_eq!((per_seed("cssa"), per_seed("gaff")), (7, 8));
        // Phase 2 tunes the top k of each block: CSSA thresholds, GAFF's 2x2x2 grid less the
        // defaults phase 1 trained.
        let best: Vec<Variant> = p1.iter().map(|e| e.variant.clone()).collect();
        let p2 = m.phase2_experiments(&best);
        let p = m.phase2.as_ref().unwrap();
        let seeds = m.seeds.len();
        let cssa = p2.iter().filter(|e| e.variant.kind == "cssa").count();
        let gaff = p2.iter().filter(|e| e.variant.kind == "gaff").count();
        // The seed: 4 threshold runs (top 2 x 0.3, 0.7), 24 GAFF runs (top 3 x 8, of which
        // the defaults are phase 1's).
        assert_eq!(cssa, p.cssa_top_k * p.cssa_threshold.len() * seeds);
        assert_eq!(cssa / seeds, 4);
        assert_eq!(gaff, p.gaff_top_k * 7 * seeds);
        assert_eq!(gaff / seeds + p.gaff_top_k, 24);
        let ids: std::collections::HashSet<String> =
            p1.iter().chain(&p2).map(Experiment::id).collect();
        assert_eq!(ids.len(), p1.len() + p2.len(), "experiment ids are unique");
    }
}
