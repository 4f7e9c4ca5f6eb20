//! Per-component optimizers: `[[train.param_groups]]` give the backbone, the neck and the head
//! each their own optimizer and learning rate. Read back from what the optimizer saved (which
//! state each parameter carries, under which module path) and from the first update itself
//! (Lion and AdamW move every weight by the learning rate on their first step, SGD by the
//! learning rate times the gradient), every parameter got what the config says. A run with
//! groups trains, logs each group's rate and resumes exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use prism_models::rvt::RvtState;
use prism_train::optim::{param_paths_with_ids, OptimizerKind};
use prism_train::{RunOptions, Trainer};

/// Burn's random generator is one per process: tests that draw weights take turns, so each
/// run's initial weights depend on its seed alone.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_turn() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Backbone on Lion, neck on SGD, the head's classifier on AdamW at its own rate; the rest of
/// the head falls back to the `[train]` optimizer (AdamW at 2e-3). Constant schedules, so the
/// first step's rate is the configured one.
const GROUPS: &str = r#"
schedule = "constant"
[[train.param_groups]]
prefix = "backbone"
optimizer = "lion"
lr = 1e-4
[[train.param_groups]]
prefix = "neck"
optimizer = "sgd"
lr = 5e-2
[[train.param_groups]]
prefix = "head.cls_preds"
optimizer = "adamw"
lr = 7e-4
"#;

/// Each float parameter's values and gradient, by id.
struct Values<'a> {
    grads: Option<&'a GradientsParams>,
    out: HashMap<ParamId, (Vec<f32>, Option<Vec<f32>>)>,
}

impl ModuleVisitor for Values<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param.val().into_data().try_into_vec::<f32>().unwrap();
        let grad = self
            .grads
            .and_then(|g| g.get::<D>(param.id))
            .map(|g| g.into_data().try_into_vec::<f32>().unwrap());
        self.out.insert(param.id, (values, grad));
    }
}

fn values<M: Module>(
    model: &M,
    grads: Option<&GradientsParams>,
) -> HashMap<ParamId, (Vec<f32>, Option<Vec<f32>>)> {
    let mut v = Values {
        grads,
        out: HashMap::new(),
    };
    model.visit(&mut v);
    v.out
}

/// The learning rate a first step applied, measured from the update: Lion and AdamW move each
/// weight by lr (times the sign of its gradient), SGD by lr times the gradient. None where no
/// gradient is large enough to tell (AdamW's `g / (|g| + 1e-8)` is within 1% of 1 only above
/// 1e-6).
fn applied_lr(kind: OptimizerKind, before: &[f32], after: &[f32], grad: &[f32]) -> Option<f64> {
    let steps = before.iter().zip(after).zip(grad);
    match kind {
        OptimizerKind::Sgd => {
            let (dg, gg) = steps.fold((0.0f64, 0.0f64), |(dg, gg), ((b, a), g)| {
                (
                    dg + f64::from(a - b) * f64::from(*g),
                    gg + f64::from(*g) * f64::from(*g),
                )
            });
            (gg > 0.0).then(|| -dg / gg)
        }
        OptimizerKind::Lion | OptimizerKind::Adamw => {
            // AdamW's first update is lr * g / (|g| + 1e-8): lr itself where |g| >> 1e-8.
            let floor = if kind == OptimizerKind::Lion {
                0.0
            } else {
                1e-6
            };
            let mut moves: Vec<f64> = steps
                .filter(|(_, g)| g.abs() > floor)
                .map(|((b, a), _)| f64::from((a - b).abs()))
                .collect();
            moves.sort_by(f64::total_cmp);
            moves.get(moves.len() / 2).copied()
        }
    }
}

/// Which optimizer left this state (its tensors' names, `{id}.{field}…`).
fn kind_of_state(names: &[&str]) -> OptimizerKind {
    if names.iter().any(|n| n.ends_with("moment_1")) {
        OptimizerKind::Adamw
    } else if names.iter().any(|n| n.ends_with("velocity")) {
        OptimizerKind::Sgd
    } else if names.iter().all(|n| n.ends_with(".momentum")) && !names.is_empty() {
        OptimizerKind::Lion
    } else {
        panic!("unknown optimizer state {names:?}")
    }
}

#[test]
fn each_group_gets_the_optimizer_and_learning_rate_its_config_says() {
    let _turn = rng_turn();
    let config = common::small_config(10, GROUPS);
    let plan = config.train.optimizer_plan().unwrap();
    let device = Device::flex().autodiff();
    device.seed(5);
    let model = config.card.rvt_config().init(&device);
    plan.check_against(&model).unwrap();

    let x = Tensor::<4>::random([2, 4, 64, 64], Distribution::Uniform(0.0, 3.0), &device);
    let state = RvtState::zeros(&config.card.rvt_config(), 2, [64, 64], &device);
    let (raw, _) = model.forward(x, state);
    let loss = (raw.clone() * raw).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let before = values(&model, Some(&grads));

    let mut optim = plan.init();
    let model = optim.step(plan.module_lr(0), model, grads);
    let after = values(&model, None);

    // What the optimizer saved: each parameter's state tensors and its module path.
    let bytes = optim.into_bytes().unwrap();
    let reader = burn_pack::Reader::from_bytes(bytes).unwrap();
    let saved_paths = reader.metadata().clone();
    let mut state_names: HashMap<u64, Vec<&str>> = HashMap::new();
    for name in reader.tensor_names() {
        let id = name.split('.').next().unwrap().parse::<u64>().unwrap();
        state_names.entry(id).or_default().push(name);
    }

    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut untold = 0;
    let all = before.values().filter(|(_, g)| g.is_some()).count();
    for (path, id) in param_paths_with_ids(&model) {
        let group = plan.group_of(&path);
        let (b, g) = &before[&id];
        let key = id.val();
        let Some(g) = g.as_ref() else {
            // BatchNorm's running statistics: not trained, so no optimizer state.
            assert!(path.contains("running_"), "{path}: no gradient");
            assert!(
                !state_names.contains_key(&key),
                "{path}: state without a gradient"
            );
            continue;
        };
        assert_eq!(
            saved_paths.get(&key.to_string()),
            Some(&path),
            "{path}: the saved state names its path (a resume regroups by it)"
        );
        let names = state_names.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(
            kind_of_state(names),
            group.optimizer,
            "{path}: state {names:?} is not from the {:?} of group {:?}",
            group.optimizer,
            group.name
        );
        let Some(lr) = applied_lr(group.optimizer, b, &after[&id].0, g) else {
            untold += 1;
            continue;
        };
        assert!(
            (lr - group.lr).abs() <= 0.02 * group.lr,
            "{path} ({:?}, group {:?}): the update applied lr {lr:.3e}, the config says {:.3e}",
            group.optimizer,
            group.name,
            group.lr
        );
        *counts.entry(group.name.clone()).or_default() += 1;
    }
    assert!(
        untold * 10 < all,
        "{untold} of {all} parameters had gradients too small to measure the update"
    );
    // Every group holds parameters; the default group holds the rest of the head.
    for name in ["backbone", "neck", "head.cls_preds", "default"] {
        assert!(
            counts.get(name).copied().unwrap_or(0) > 0,
            "{name}: {counts:?}"
        );
    }
    // And the configured rates are the plan's.
    let by_name: HashMap<&str, (OptimizerKind, f64)> = plan
        .groups
        .iter()
        .map(|g| (g.name.as_str(), (g.optimizer, g.lr)))
        .collect();
    assert_eq!(by_name["backbone"], (OptimizerKind::Lion, 1e-4));
    assert_eq!(by_name["neck"], (OptimizerKind::Sgd, 5e-2));
    assert_eq!(by_name["head.cls_preds"], (OptimizerKind::Adamw, 7e-4));
    assert_eq!(by_name["default"], (OptimizerKind::Adamw, 2e-3));
}

#[test]
fn lion_follows_its_published_update_rule_over_several_steps() {
    // Chen et al. 2023, Algorithm 2: c = b1 m + (1 - b1) g; w -= lr (sign(c) + wd w);
    // m = b2 m + (1 - b2) g; b1 = 0.9, b2 = 0.99.
    let mut config = common::small_config(
        10,
        "optimizer = \"lion\"\nweight_decay = 0.5\nschedule = \"constant\"",
    );
    config.train.lr = 1e-3;
    let plan = config.train.optimizer_plan().unwrap();
    let device = Device::flex().autodiff();
    let mut optim = plan.init();
    #[derive(Module, Debug)]
    struct One {
        w: Param<Tensor<1>>,
    }
    let mut model = One {
        w: Param::from_tensor(Tensor::<1>::from_floats([0.5, -0.25, 1.0, 0.0], &device)),
    };
    let (lr, wd, b1, b2) = (1e-3f64, 0.5f64, 0.9f64, 0.99f64);
    let mut w: Vec<f64> = vec![0.5, -0.25, 1.0, 0.0];
    let mut m = [0.0f64; 4];
    let targets: [[f32; 4]; 3] = [
        [1.0, 0.0, -1.0, 2.0],
        [-3.0, 0.5, 0.2, 0.1],
        [0.3, -0.7, 0.9, -2.0],
    ];
    for target in targets {
        // Loss sum(w * t): the gradient is t.
        let t = Tensor::<1>::from_floats(target, &device);
        let loss = (model.w.val() * t).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(plan.module_lr(0), model, grads);
        for i in 0..4 {
            let g = f64::from(target[i]);
            let c = b1 * m[i] + (1.0 - b1) * g;
            let sign = if c > 0.0 {
                1.0
            } else if c < 0.0 {
                -1.0
            } else {
                0.0
            };
            w[i] -= lr * (sign + wd * w[i]);
            m[i] = b2 * m[i] + (1.0 - b2) * g;
        }
        let got = model.w.val().into_data().try_into_vec::<f32>().unwrap();
        for i in 0..4 {
            assert!(
                (f64::from(got[i]) - w[i]).abs() < 1e-6,
                "element {i}: {} vs the rule's {}",
                got[i],
                w[i]
            );
        }
    }
}

#[test]
fn a_run_with_groups_trains_logs_each_rate_and_resumes_exactly() {
    let _turn = rng_turn();
    let dir = tempfile::tempdir().unwrap();
    let groups = r#"
[[train.param_groups]]
prefix = "backbone"
optimizer = "lion"
lr = 2e-4
weight_decay = 0.1
[[train.param_groups]]
prefix = "head"
optimizer = "sgd"
lr = 1e-2
schedule = "cosine"
"#;
    let config = common::small_config(4, groups);
    let (train, val) = common::splits(&config, &dir.path().join("data"));
    let opts = |name: &str, resume: bool, stop_after: Option<usize>| RunOptions {
        run_dir: dir.path().join(name),
        resume,
        stop_after,
        eval_filter: prism_eval::prophesee::BoxFilter::none(),
        device: prism_train::TrainDevice::Flex,
    };
    Trainer::new(config.clone(), opts("whole", false, None), &train, &val)
        .unwrap()
        .run(|_| {})
        .unwrap();
    Trainer::new(config.clone(), opts("split", false, Some(2)), &train, &val)
        .unwrap()
        .run(|_| {})
        .unwrap();
    Trainer::new(config.clone(), opts("split", true, None), &train, &val)
        .unwrap()
        .run(|_| {})
        .unwrap();
    let whole = common::train_losses(&dir.path().join("whole"));
    let split = common::train_losses(&dir.path().join("split"));
    assert_eq!(whole.len(), 4);
    assert!(whole.iter().all(|(_, l)| l.is_finite()));
    assert_eq!(whole, split, "the resumed run regroups every parameter");

    use prism_train::metrics_log::{read, Record};
    let plan = config.train.optimizer_plan().unwrap();
    let logged: Vec<Vec<(String, f64)>> = read(&dir.path().join("whole/metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(s) => Some(s.group_lr),
            Record::Val(_) => None,
        })
        .collect();
    for (step, rates) in logged.iter().enumerate() {
        assert_eq!(rates, &plan.named_group_lrs(step), "step {step}");
        assert_eq!(rates[0].0, "backbone");
        assert_eq!(rates[1].0, "head");
    }
}

#[test]
fn a_prefix_that_names_nothing_is_refused_by_name() {
    let _turn = rng_turn();
    let config = common::small_config(
        10,
        "[[train.param_groups]]\nprefix = \"backbon\"\noptimizer = \"lion\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = common::splits(&config, &dir.path().join("data"));
    let opts = RunOptions {
        run_dir: dir.path().join("run"),
        resume: false,
        stop_after: Some(1),
        eval_filter: prism_eval::prophesee::BoxFilter::none(),
        device: prism_train::TrainDevice::Flex,
    };
    let err = Trainer::new(config, opts, &train, &val)
        .unwrap()
        .run(|_| {})
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("\"backbon\"") && text.contains("backbone, fpn, yolox_head"),
        "{text}"
    );
}
