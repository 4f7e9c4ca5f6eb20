//! Run a module's forward pass under `burn-capture` and collect the IR, the recorded tensor
//! data (weights, constants) and the module paths of the parameters.

use std::collections::{BTreeMap, HashMap, HashSet};

use burn::backend::capture::{CaptureBackend, TensorId};
use burn::backend::ir::{GraphIr, OperationIr};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Float, Int, Tensor, TensorData};

use crate::error::{ExportError, Result};

mod sealed {
    pub trait Sealed {}
}

/// A set of Burn tensors used as the inputs or outputs of an exported forward pass: a tensor,
/// a tuple of up to six tensor sets, or a `Vec` of them. Order is flattening order, which is
/// the order of the ONNX graph's inputs and outputs.
pub trait TensorSet: sealed::Sealed + Sized {
    /// Append the capture IDs of every tensor (tensors must be on the capture device).
    fn collect_ids(&self, ids: &mut Vec<TensorId>) -> Result<()>;
    /// Move every tensor to `device`.
    fn to_device(self, device: &Device) -> Self;
    /// Read every tensor's data, in flattening order.
    fn collect_data(&self, out: &mut Vec<TensorData>);
    /// The same tensors as zeros with axis 0 resized to `batch` (second capture for a dynamic
    /// batch axis). Rank-0 tensors are kept.
    fn with_batch(&self, batch: usize) -> Self;
    /// Float tensors replaced by deterministic pseudo-random normal values; int and bool
    /// tensors kept, since they usually carry indices or masks whose ranges matter.
    fn randomized(&self, seed: &mut u64) -> Self;
    /// Shapes in flattening order.
    fn collect_shapes(&self, out: &mut Vec<Vec<usize>>);
}

/// Deterministic standard-normal-ish samples (Box–Muller over a 64-bit LCG).
pub(crate) fn normal_samples(seed: &mut u64, n: usize) -> Vec<f32> {
    let mut next = || {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (next(), next());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

macro_rules! impl_tensor_set {
    ($kind:ty, $random:expr) => {
        impl<const D: usize> sealed::Sealed for Tensor<D, $kind> {}
        impl<const D: usize> TensorSet for Tensor<D, $kind> {
            fn collect_ids(&self, ids: &mut Vec<TensorId>) -> Result<()> {
                let primitive = self.clone().try_into_primitive::<CaptureBackend>().map_err(|e| {
                    ExportError::Boundary(format!(
                        "tensor is not on the capture device (create results from the inputs \
                         given to the forward closure): {e:?}"
                    ))
                })?;
                ids.push(primitive.id());
                Ok(())
            }
            fn to_device(self, device: &Device) -> Self {
                Tensor::to_device(self, device)
            }
            fn collect_data(&self, out: &mut Vec<TensorData>) {
                out.push(self.to_data());
            }
            fn with_batch(&self, batch: usize) -> Self {
                let mut dims = self.dims();
                if D > 0 {
                    dims[0] = batch;
                }
                Tensor::<D, $kind>::zeros(dims, &self.device())
            }
            fn randomized(&self, seed: &mut u64) -> Self {
                let f: fn(&Self, &mut u64) -> Self = $random;
                f(self, seed)
            }
            fn collect_shapes(&self, out: &mut Vec<Vec<usize>>) {
                out.push(self.dims().to_vec());
            }
        }
    };
}

impl_tensor_set!(Float, |t, seed| {
    let dims = t.dims();
    let n = dims.iter().product();
    Tensor::from_data(TensorData::new(normal_samples(seed, n), dims), &t.device())
});
impl_tensor_set!(Int, |t, _| t.clone());
impl_tensor_set!(Bool, |t, _| t.clone());

impl<T: TensorSet> sealed::Sealed for Vec<T> {}
impl<T: TensorSet> TensorSet for Vec<T> {
    fn collect_ids(&self, ids: &mut Vec<TensorId>) -> Result<()> {
        self.iter().try_for_each(|t| t.collect_ids(ids))
    }
    fn to_device(self, device: &Device) -> Self {
        self.into_iter().map(|t| t.to_device(device)).collect()
    }
    fn collect_data(&self, out: &mut Vec<TensorData>) {
        self.iter().for_each(|t| t.collect_data(out))
    }
    fn with_batch(&self, batch: usize) -> Self {
        self.iter().map(|t| t.with_batch(batch)).collect()
    }
    fn randomized(&self, seed: &mut u64) -> Self {
        self.iter().map(|t| t.randomized(seed)).collect()
    }
    fn collect_shapes(&self, out: &mut Vec<Vec<usize>>) {
        self.iter().for_each(|t| t.collect_shapes(out))
    }
}

macro_rules! impl_tuple {
    ($($n:ident $i:tt),+) => {
        impl<$($n: TensorSet),+> sealed::Sealed for ($($n,)+) {}
        impl<$($n: TensorSet),+> TensorSet for ($($n,)+) {
            fn collect_ids(&self, ids: &mut Vec<TensorId>) -> Result<()> {
                $(self.$i.collect_ids(ids)?;)+
                Ok(())
            }
            fn to_device(self, device: &Device) -> Self {
                ($(self.$i.to_device(device),)+)
            }
            fn collect_data(&self, out: &mut Vec<TensorData>) {
                $(self.$i.collect_data(out);)+
            }
            fn with_batch(&self, batch: usize) -> Self {
                ($(self.$i.with_batch(batch),)+)
            }
            fn randomized(&self, seed: &mut u64) -> Self {
                ($(self.$i.randomized(seed),)+)
            }
            fn collect_shapes(&self, out: &mut Vec<Vec<usize>>) {
                $(self.$i.collect_shapes(out);)+
            }
        }
    };
}

impl_tuple!(A 0);
impl_tuple!(A 0, B 1);
impl_tuple!(A 0, B 1, C 2);
impl_tuple!(A 0, B 1, C 2, D 3);
impl_tuple!(A 0, B 1, C 2, D 3, E 4);
impl_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);

/// One captured forward pass.
#[derive(Debug)]
pub struct Captured {
    /// The recorded operations with their declared inputs and outputs.
    pub graph: GraphIr,
    /// Recorded tensor data: weights, constants created in the forward pass, sample inputs.
    pub values: BTreeMap<TensorId, TensorData>,
    /// Module path (`encoder.fc1.weight`) of each parameter.
    pub param_names: HashMap<TensorId, String>,
}

/// Records module paths for parameter tensors on the capture device.
#[derive(Default)]
struct ParamNames {
    path: Vec<String>,
    names: HashMap<TensorId, String>,
}

impl ParamNames {
    fn record<T: TensorSet>(&mut self, tensor: T) {
        let mut ids = Vec::new();
        if tensor.collect_ids(&mut ids).is_ok() {
            let name = self.path.join(".");
            for id in ids {
                self.names.entry(id).or_insert_with(|| name.clone());
            }
        }
    }
}

impl ModuleVisitor for ParamNames {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.record(param.val());
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.record(param.val());
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.record(param.val());
    }
}

/// Handles to every float tensor of a module, running statistics included, in visit order.
///
/// Burn's `RunningState` (BatchNorm statistics) is shared between clones and moved in place by
/// `to_device`, so moving a clone to the capture device would leave the caller's module pointing
/// at capture tensors. The snapshot (handles, not copies) lets [`capture`] put them back.
#[derive(Default)]
struct Snapshot(Vec<Box<dyn std::any::Any>>);

impl ModuleVisitor for Snapshot {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(Box::new(param.val()));
    }
}

struct Restore(std::vec::IntoIter<Box<dyn std::any::Any>>);

impl ModuleMapper for Restore {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.0.next().and_then(|b| b.downcast::<Tensor<D>>().ok()) {
            Some(tensor) => {
                let (id, _, mapper) = param.consume();
                Param::from_mapped_value(id, *tensor, mapper)
            }
            None => param,
        }
    }
}

/// Capture `forward(module, inputs)` on a fresh capture device.
///
/// The module and inputs are moved onto the capture device inside the scope; everything the
/// forward pass creates is recorded. `Init` operations (value declarations) are dropped: the
/// values themselves are kept in [`Captured::values`].
pub fn capture<M, I, O, F>(module: &M, inputs: I, forward: F) -> Result<Captured>
where
    M: Module,
    I: TensorSet,
    O: TensorSet,
    F: FnOnce(&M, I) -> O,
{
    let mut snapshot = Snapshot::default();
    module.visit(&mut snapshot);
    let device = Device::capture();
    let mut meta: Option<Result<HashMap<TensorId, String>>> = None;
    let captured = device
        .capture_scope(|scope| {
            let module = module.clone().to_device(&device);
            let mut names = ParamNames::default();
            module.visit(&mut names);
            let inputs = inputs.to_device(&device);
            let mut input_ids = Vec::new();
            if let Err(e) = inputs.collect_ids(&mut input_ids) {
                meta = Some(Err(e));
                return scope.complete([], []);
            }
            let outputs = forward(&module, inputs);
            let mut output_ids = Vec::new();
            if let Err(e) = outputs.collect_ids(&mut output_ids) {
                meta = Some(Err(e));
                return scope.complete([], []);
            }
            meta = Some(Ok(names.names));
            scope.complete(input_ids, output_ids)
        })
        .map_err(|e| ExportError::Capture(format!("{e:?}")));
    // Shared running states now live on the closed capture device: point them back.
    let _ = module.clone().map(&mut Restore(snapshot.0.into_iter()));
    let param_names = match meta {
        Some(m) => m?,
        None => return Err(ExportError::Capture("capture scope did not run".into())),
    };
    let mut captured = captured?;
    captured
        .graph
        .operations
        .retain(|op| !matches!(op, OperationIr::Init(_)));
    let inputs: HashSet<_> = captured.graph.inputs.iter().copied().collect();
    for id in &captured.graph.inputs {
        if !captured.values.contains_key(id) {
            return Err(ExportError::Boundary(format!(
                "input {id} has no recorded value"
            )));
        }
    }
    // A runtime input never doubles as a parameter.
    let param_names = param_names
        .into_iter()
        .filter(|(id, _)| !inputs.contains(id))
        .collect();
    Ok(Captured {
        graph: captured.graph,
        values: captured.values,
        param_names,
    })
}
