//! Per-component optimizers: parameter groups chosen by module path (`backbone`, `neck`, `head`
//! or any prefix such as `backbone.stages.0`), each with its own optimizer (AdamW, SGD, Lion),
//! learning rate, weight decay and schedule.
//!
//! Burn's `ModuleOptimizer` already keeps one optimizer per parameter group (and records each
//! parameter's path with its state, so a resumed run puts every parameter back in its group),
//! and its `ModuleLearningRate` gives each group its own rate: this module turns the `[train]`
//! table into those two, and checks every prefix against the model before the first step.

use burn::module::{Module, ParamGroup, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, AdamWState, LionConfig, ModuleOptimizer, Optimizer, SgdConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::schedule::OneCycle;

/// Which update rule a group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW (decoupled weight decay, epsilon 1e-8): RVT's optimizer.
    #[default]
    Adamw,
    /// SGD with momentum 0.9 (weight decay as an L2 term on the gradient, as PyTorch's SGD).
    Sgd,
    /// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of
    /// an interpolated momentum, betas 0.9 / 0.99, decoupled weight decay. It wants a learning
    /// rate 3-10x below AdamW's and a weight decay as much higher.
    Lion,
}

/// How a group's learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// RVT's one-cycle: linear warm-up from lr / 20, linear decay to lr / 10000.
    #[default]
    OneCycle,
    /// The same warm-up, then cosine decay to lr / 10000.
    Cosine,
    /// The learning rate as given, every step.
    Constant,
}

/// One `[[train.param_groups]]` entry; what it leaves out comes from the `[train]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroupSection {
    /// Module path prefix: `backbone`, `neck`, `head` (the model's names for its parts) or a
    /// path such as `backbone.stages.0` or `yolox_head.cls_preds`.
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerKind>,
    /// Peak learning rate of the group's schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleKind>,
}

/// The `[train]` keys that describe the optimizer of every parameter no group claims.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaseSettings {
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: ScheduleKind,
    pub steps: usize,
    pub warmup_pct: f64,
}

/// A resolved group: a module path prefix (empty for the base group) and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    /// The name the config used (`backbone`, `neck`, …); `default` for the base group.
    pub name: String,
    /// The module path prefix it stands for; empty: every parameter.
    pub path_prefix: String,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: ScheduleKind,
}

/// Every group of a run, base first; a later group wins for the parameters two groups share
/// (Burn's rule), so `backbone` then `backbone.stages.0` gives stage 0 its own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerPlan {
    pub groups: Vec<GroupPlan>,
    steps: usize,
    warmup_pct: f64,
}

impl OptimizerPlan {
    /// Resolves the groups: `aliases` maps the names users type (`neck`) to the model's module
    /// names (`fpn`); any other prefix is taken as a module path.
    pub fn new(
        base: BaseSettings,
        groups: &[ParamGroupSection],
        aliases: &[(&str, &str)],
    ) -> Result<Self, ConfigError> {
        let mut plans = vec![GroupPlan {
            name: "default".into(),
            path_prefix: String::new(),
            optimizer: base.optimizer,
            lr: base.lr,
            weight_decay: base.weight_decay,
            schedule: base.schedule,
        }];
        for (i, g) in groups.iter().enumerate() {
            let bad = |m: String| ConfigError::Invalid(format!("train.param_groups[{i}]: {m}"));
            let prefix = g.prefix.trim().trim_matches('.');
            if prefix.is_empty() {
                return Err(bad("prefix is empty".into()));
            }
            let (head, rest) = prefix.split_once('.').unwrap_or((prefix, ""));
            let head = aliases
                .iter()
                .find(|(alias, _)| *alias == head)
                .map_or(head, |(_, module)| *module);
            let path_prefix = if rest.is_empty() {
                head.to_string()
            } else {
                format!("{head}.{rest}")
            };
            let plan = GroupPlan {
                name: prefix.to_string(),
                path_prefix,
                optimizer: g.optimizer.unwrap_or(base.optimizer),
                lr: g.lr.unwrap_or(base.lr),
                weight_decay: g.weight_decay.unwrap_or(base.weight_decay),
                schedule: g.schedule.unwrap_or(base.schedule),
            };
            if !(plan.lr.is_finite() && plan.lr > 0.0) {
                return Err(bad(format!("lr must be positive, not {}", plan.lr)));
            }
            if !(plan.weight_decay.is_finite() && plan.weight_decay >= 0.0) {
                return Err(bad(format!(
                    "weight_decay must be >= 0, not {}",
                    plan.weight_decay
                )));
            }
            plans.push(plan);
        }
        Ok(Self {
            groups: plans,
            steps: base.steps,
            warmup_pct: base.warmup_pct,
        })
    }

    /// Refuses a group whose prefix matches no parameter of `model`, naming the top-level
    /// modules it could have meant.
    pub fn check_against<M: Module>(&self, model: &M) -> Result<(), ConfigError> {
        let paths = param_paths(model);
        for group in self.groups.iter().skip(1) {
            if !paths.iter().any(|p| under_prefix(p, &group.path_prefix)) {
                let mut tops: Vec<&str> =
                    paths.iter().filter_map(|p| p.split('.').next()).collect();
                tops.dedup();
                return Err(ConfigError::Invalid(format!(
                    "train.param_groups: prefix {:?} ({}) matches no parameter; the model's \
                     parts are {} (or backbone, neck, head)",
                    group.name,
                    group.path_prefix,
                    tops.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The group that updates the parameter at `path` (the last one matching).
    pub fn group_of(&self, path: &str) -> &GroupPlan {
        self.groups
            .iter()
            .rev()
            .find(|g| under_prefix(path, &g.path_prefix))
            .unwrap_or(&self.groups[0])
    }

    /// A fresh optimizer with one Burn optimizer per group.
    pub fn init(&self) -> ModuleOptimizer {
        let base = &self.groups[0];
        let optimizer = match base.optimizer {
            OptimizerKind::Adamw => ModuleOptimizer::from(adamw(base.weight_decay)),
            OptimizerKind::Sgd => ModuleOptimizer::from(sgd(base.weight_decay)),
            OptimizerKind::Lion => ModuleOptimizer::from(lion(base.weight_decay)),
        };
        self.groups[1..]
            .iter()
            .fold(optimizer, |optimizer, g| match g.optimizer {
                OptimizerKind::Adamw => {
                    optimizer.with_group(param_group(g), adamw(g.weight_decay), None)
                }
                OptimizerKind::Sgd => {
                    optimizer.with_group(param_group(g), sgd(g.weight_decay), None)
                }
                OptimizerKind::Lion => {
                    optimizer.with_group(param_group(g), lion(g.weight_decay), None)
                }
            })
    }

    /// Each group's learning rate at optimizer step `step` (0-based).
    pub fn learning_rates(&self, step: usize) -> Vec<f64> {
        self.groups.iter().map(|g| self.lr_of(g, step)).collect()
    }

    /// Each named group's rate at `step` (not the base group's), for the metrics log.
    pub fn named_group_lrs(&self, step: usize) -> Vec<(String, f64)> {
        self.groups[1..]
            .iter()
            .map(|g| (g.name.clone(), self.lr_of(g, step)))
            .collect()
    }

    /// The base group's rate at `step` (what the metrics log calls `lr`).
    pub fn base_lr(&self, step: usize) -> f64 {
        self.lr_of(&self.groups[0], step)
    }

    /// The per-parameter learning rates Burn's optimizer takes at `step`.
    pub fn module_lr(&self, step: usize) -> ModuleLearningRate {
        let rates = self.learning_rates(step);
        let scheduler = self.groups[1..]
            .iter()
            .zip(&rates[1..])
            .fold(ModuleLrScheduler::new(rates[0]), |s, (g, &lr)| {
                s.with_group(param_group(g), lr)
            });
        let mut scheduler = scheduler;
        scheduler.step()
    }

    fn lr_of(&self, group: &GroupPlan, step: usize) -> f64 {
        let mut one_cycle = OneCycle::rvt(group.lr, self.steps);
        one_cycle.pct_start = self.warmup_pct;
        match group.schedule {
            ScheduleKind::OneCycle => one_cycle.lr(step),
            ScheduleKind::Cosine => one_cycle.cosine_lr(step),
            ScheduleKind::Constant => group.lr,
        }
    }
}

/// AdamW's moment decays and epsilon in prism (PyTorch's defaults but epsilon, RVT's 1e-8).
const ADAMW_BETAS: (f32, f32) = (0.9, 0.999);
const ADAMW_EPSILON: f32 = 1e-8;

/// AdamW as prism trains with it: betas 0.9 / 0.999, epsilon 1e-8, decoupled weight decay
/// `weight_decay`.
pub fn adamw(weight_decay: f64) -> AdamW {
    AdamW {
        burn: AdamWConfig::new()
            .with_beta_1(ADAMW_BETAS.0)
            .with_beta_2(ADAMW_BETAS.1)
            .with_weight_decay(weight_decay as f32)
            .with_epsilon(ADAMW_EPSILON)
            .build(),
        weight_decay,
    }
}

/// Burn's AdamW, whose step on a LibTorch device (prism's `tch` feature) runs LibTorch's fused
/// AdamW kernel instead of Burn's tensor operations: the same update (betas 0.9 / 0.999, the
/// same bias corrections, decay and epsilon) in one pass over each parameter. Its state is
/// Burn's `AdamWState`, so checkpoints move between backends as before.
#[derive(Clone)]
pub struct AdamW {
    burn: burn::optim::AdamW,
    /// Read by the fused step only (builds with the `tch` feature).
    #[cfg_attr(not(feature = "tch"), allow(dead_code))]
    weight_decay: f64,
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "tch")]
        if fusable(&tensor, &grad, state.as_ref()) {
            return self.fused_step(lr, tensor, grad, state);
        }
        self.burn.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        burn::optim::AdamW::to_device(state, device)
    }
}

/// Whether LibTorch's fused kernel can take this step: a LibTorch device, moments (if any) of
/// the parameter's dtype and shape, and no AMSGrad maximum.
#[cfg(feature = "tch")]
fn fusable<const D: usize>(
    tensor: &Tensor<D>,
    grad: &Tensor<D>,
    state: Option<&AdamWState<D>>,
) -> bool {
    use prism_models::kernels::can_fuse_adamw;
    match state {
        None => can_fuse_adamw(tensor, [grad, grad, grad]),
        Some(s) => {
            let m = &s.momentum;
            m.max_moment_2.is_none() && can_fuse_adamw(tensor, [grad, &m.moment_1, &m.moment_2])
        }
    }
}

#[cfg(feature = "tch")]
impl AdamW {
    /// The step through [`prism_models::kernels::fused_adamw`] (where [`fusable`]); a first
    /// step starts from zero moments, which gives Burn's first moments.
    fn fused_step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        use burn::optim::AdaptiveMomentumState;
        use prism_models::kernels::{fused_adamw, AdamWStep};
        let (time, moments) = match state {
            Some(s) => (s.momentum.time, (s.momentum.moment_1, s.momentum.moment_2)),
            None => (0, (tensor.zeros_like(), tensor.zeros_like())),
        };
        let step = AdamWStep {
            lr,
            beta_1: ADAMW_BETAS.0 as f64,
            beta_2: ADAMW_BETAS.1 as f64,
            epsilon: ADAMW_EPSILON as f64,
            weight_decay: self.weight_decay,
            step: time + 1,
        };
        let (tensor, moment_1, moment_2) = fused_adamw(tensor, grad, moments, step);
        let momentum = AdaptiveMomentumState::new(time + 1, moment_1, moment_2);
        (tensor, Some(AdamWState::new(momentum)))
    }
}

fn sgd(weight_decay: f64) -> burn::optim::Sgd {
    let decay = (weight_decay > 0.0)
        .then(|| burn::optim::decay::WeightDecayConfig::new(weight_decay as f32));
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
        .with_weight_decay(decay)
        .build()
}

fn lion(weight_decay: f64) -> burn::optim::Lion {
    LionConfig::new()
        .with_weight_decay(weight_decay as f32)
        .build()
}

/// The Burn group of the parameters under `g.path_prefix`.
fn param_group(g: &GroupPlan) -> ParamGroup {
    let pattern = format!("^{}(\\.|$)", regex_escape(&g.path_prefix));
    // The pattern is built from an escaped literal, so it always compiles.
    ParamGroup::from_regex(&pattern).unwrap_or_else(|_| ParamGroup::from_ids(Vec::new()))
}

fn under_prefix(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'.'))
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The dotted path of every float parameter (`backbone.stages.0.conv.weight`), the same path
/// Burn's optimizer matches groups against.
pub fn param_paths<M: Module>(model: &M) -> Vec<String> {
    param_paths_with_ids(model)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// [`param_paths`] with each parameter's id (for reading the optimizer's state back).
pub fn param_paths_with_ids<M: Module>(model: &M) -> Vec<(String, ParamId)> {
    prism_models::rvt::params::list_tensors(model)
        .into_iter()
        .map(|p| (p.path, p.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BaseSettings {
        BaseSettings {
            optimizer: OptimizerKind::Adamw,
            lr: 1e-3,
            weight_decay: 0.0,
            schedule: ScheduleKind::OneCycle,
            steps: 100,
            warmup_pct: 0.1,
        }
    }

    fn group(prefix: &str) -> ParamGroupSection {
        ParamGroupSection {
            prefix: prefix.into(),
            optimizer: None,
            lr: None,
            weight_decay: None,
            schedule: None,
        }
    }

    #[test]
    fn aliases_resolve_and_later_groups_win() {
        let aliases = [("neck", "fpn"), ("head", "yolox_head")];
        let plan = OptimizerPlan::new(
            base(),
            &[
                ParamGroupSection {
                    optimizer: Some(OptimizerKind::Lion),
                    lr: Some(1e-4),
                    ..group("backbone")
                },
                ParamGroupSection {
                    optimizer: Some(OptimizerKind::Sgd),
                    ..group("backbone.stages.0")
                },
                group("head.cls_preds"),
            ],
            &aliases,
        )
        .unwrap();
        assert_eq!(plan.groups[3].path_prefix, "yolox_head.cls_preds");
        assert_eq!(
            plan.group_of("backbone.stages.1.att.weight").optimizer,
            OptimizerKind::Lion
        );
        assert_eq!(
            plan.group_of("backbone.stages.0.att.weight").optimizer,
            OptimizerKind::Sgd
        );
        // A prefix is a whole path component: `backbone.stages.0` is not `backbone.stages.01`.
        assert_eq!(
            plan.group_of("backbone.stages.01.w").optimizer,
            OptimizerKind::Lion
        );
        assert_eq!(plan.group_of("fpn.x.weight").name, "default");
        // The group inherits what it leaves out.
        assert_eq!(plan.groups[2].lr, 1e-3);
    }

    #[test]
    fn each_group_follows_its_own_schedule() {
        let plan = OptimizerPlan::new(
            base(),
            &[ParamGroupSection {
                lr: Some(5e-4),
                schedule: Some(ScheduleKind::Constant),
                ..group("head")
            }],
            &[],
        )
        .unwrap();
        let first = plan.learning_rates(0);
        assert!((first[0] - 1e-3 / 20.0).abs() < 1e-15);
        assert_eq!(first[1], 5e-4);
        assert_eq!(plan.learning_rates(99)[1], 5e-4);
    }

    #[test]
    fn bad_groups_are_refused() {
        for bad in [
            group(""),
            ParamGroupSection {
                lr: Some(-1.0),
                ..group("head")
            },
            ParamGroupSection {
                weight_decay: Some(f64::NAN),
                ..group("head")
            },
        ] {
            assert!(OptimizerPlan::new(base(), &[bad], &[]).is_err());
        }
    }
}
