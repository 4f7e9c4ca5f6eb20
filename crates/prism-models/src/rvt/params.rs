//! Parameter listing and counting (trainable parameters only: BatchNorm running statistics
//! are `RunningState`s, which Burn's `num_params()` also counts, so they are excluded here).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use super::Rvt;

/// One float tensor of a module with its dotted path.
#[derive(Debug, Clone)]
pub struct NamedParam {
    /// Path such as `backbone.stages.0.lstm.conv1x1.weight`.
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// True for BatchNorm running statistics (not trainable).
    pub running_stat: bool,
    /// Burn's id of the parameter (the key of its gradient and optimizer state).
    pub id: burn::module::ParamId,
}

struct Lister {
    stack: Vec<String>,
    out: Vec<NamedParam>,
    data: Option<Vec<TensorData>>,
}

impl ModuleVisitor for Lister {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let last = self.stack.last().map(String::as_str).unwrap_or("");
        self.out.push(NamedParam {
            path: self.stack.join("."),
            shape: param.lazy_shape().to_vec(),
            running_stat: matches!(last, "running_mean" | "running_var"),
            id: param.id,
        });
        if let Some(d) = self.data.as_mut() {
            d.push(param.val().into_data());
        }
    }
}

/// All float tensors of `module` (parameters and running statistics), in visit order.
pub fn list_tensors<M: Module>(module: &M) -> Vec<NamedParam> {
    let mut l = Lister {
        stack: Vec::new(),
        out: Vec::new(),
        data: None,
    };
    module.visit(&mut l);
    l.out
}

/// All float tensors of `module` with their data.
pub fn list_tensors_with_data<M: Module>(module: &M) -> Vec<(NamedParam, TensorData)> {
    let mut l = Lister {
        stack: Vec::new(),
        out: Vec::new(),
        data: Some(Vec::new()),
    };
    module.visit(&mut l);
    let data = l.data.unwrap_or_default();
    l.out.into_iter().zip(data).collect()
}

/// Number of trainable parameters of `module` (running statistics excluded).
pub fn count_params<M: Module>(module: &M) -> usize {
    list_tensors(module)
        .iter()
        .filter(|p| !p.running_stat)
        .map(|p| p.shape.iter().product::<usize>())
        .sum()
}

/// Trainable parameters per part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamBreakdown {
    /// Recurrent backbone (incl. LSTMs, LayerScales, LayerNorms).
    pub backbone: usize,
    /// Of the backbone: the recurrent cells of the four stages (`model.memory`).
    pub memory: usize,
    /// PAFPN.
    pub fpn: usize,
    /// YOLOX head.
    pub head: usize,
    /// Sum of the three.
    pub total: usize,
}

impl Rvt {
    /// Trainable parameter counts of backbone (and its recurrent cells), FPN and head.
    pub fn param_breakdown(&self) -> ParamBreakdown {
        let backbone = count_params(&self.backbone);
        let memory = self
            .backbone
            .stages
            .iter()
            .map(|stage| stage.memory_params())
            .sum();
        let fpn = count_params(&self.fpn);
        let head = count_params(&self.yolox_head);
        ParamBreakdown {
            backbone,
            memory,
            fpn,
            head,
            total: backbone + fpn + head,
        }
    }
}
