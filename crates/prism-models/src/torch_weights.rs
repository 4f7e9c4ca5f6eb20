//! Reading PyTorch weights into Burn modules: checkpoint files (`torch.save` zip / pickle,
//! and safetensors) as plain float tensors, and an explicit reference-name -> module-path
//! table applied to a module. Shared by every import (RVT, MiT): nothing is matched by
//! heuristics; a missing or unexpected key is an error naming it, a shape mismatch names the
//! key and both shapes. PyTorch `Linear` weights (`[out, in]`) are transposed to Burn's
//! `[in, out]`. Reading uses `burn-store`; only the mapping is ours.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Tensor, TensorData};
use burn_store::{ModuleStore, PytorchStore, SafetensorsStore};

/// Errors of the checkpoint import.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read as a PyTorch checkpoint.
    #[error("cannot read checkpoint {path}: {message}")]
    Read {
        /// File.
        path: String,
        /// Reader message.
        message: String,
    },
    /// A reference key the model needs is absent.
    #[error("missing key in checkpoint: {0}")]
    MissingKey(String),
    /// Keys in the checkpoint that the mapping does not know.
    #[error("unexpected keys in checkpoint: {0:?}")]
    UnexpectedKeys(Vec<String>),
    /// None of the checkpoint's keys has the Lightning module's prefix: not a checkpoint of
    /// RVT's training code (a bare state dict, or another model).
    #[error(
        "no key starts with `{expected}` (the prefix of RVT's Lightning checkpoints); the {count} \
         keys start like {examples:?}: a bare state dict or another model's checkpoint"
    )]
    Prefix {
        expected: &'static str,
        count: usize,
        /// The first few keys.
        examples: Vec<String>,
    },
    /// A tensor has the wrong shape.
    #[error("shape mismatch for {key}: checkpoint has {found:?}, model expects {expected:?}")]
    ShapeMismatch {
        /// Reference key.
        key: String,
        /// Shape in the reference layout that the model needs.
        expected: Vec<usize>,
        /// Shape in the checkpoint.
        found: Vec<usize>,
    },
    /// The model has a part RVT's released checkpoints do not (an SSM memory).
    #[error("{0}")]
    Architecture(String),
    /// Unsupported element type.
    #[error("unsupported dtype {dtype} for {key}")]
    UnsupportedDtype {
        /// Reference key.
        key: String,
        /// Dtype name.
        dtype: String,
    },
    /// Parameters of our model that no mapping entry fills (a bug in the mapping table).
    #[error("model parameters not covered by the mapping: {0:?}")]
    Unmapped(Vec<String>),
}

/// A reference tensor in PyTorch layout (row-major), converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct RefTensor {
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// One entry of the mapping table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    /// Reference name without the Lightning prefix, e.g. `backbone.stages.0.lstm.conv1x1.weight`.
    pub reference: String,
    /// Our parameter path; `None` for reference entries that are read and ignored
    /// (`num_batches_tracked`).
    pub ours: Option<String>,
    /// PyTorch Linear weight `[out, in]` <-> Burn `[in, out]`.
    pub transpose: bool,
}

#[derive(Default)]
pub(crate) struct Table(pub(crate) Vec<KeyMap>);

impl Table {
    pub(crate) fn add(&mut self, r: String, o: String, transpose: bool) {
        self.0.push(KeyMap {
            reference: r,
            ours: Some(o),
            transpose,
        });
    }
    pub(crate) fn ignore(&mut self, r: String) {
        self.0.push(KeyMap {
            reference: r,
            ours: None,
            transpose: false,
        });
    }
    pub(crate) fn layer_norm(&mut self, r: &str, o: &str) {
        self.add(format!("{r}.weight"), format!("{o}.gamma"), false);
        self.add(format!("{r}.bias"), format!("{o}.beta"), false);
    }
    pub(crate) fn linear(&mut self, r: &str, o: &str) {
        self.add(format!("{r}.weight"), format!("{o}.weight"), true);
        self.add(format!("{r}.bias"), format!("{o}.bias"), false);
    }
    pub(crate) fn conv(&mut self, r: &str, o: &str, bias: bool) {
        self.add(format!("{r}.weight"), format!("{o}.weight"), false);
        if bias {
            self.add(format!("{r}.bias"), format!("{o}.bias"), false);
        }
    }
}

pub(crate) fn transpose2(shape: &[usize], data: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (shape[0], shape[1]);
    let mut out = vec![0.0; data.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = data[i * c + j];
        }
    }
    (vec![c, r], out)
}

/// Reads all tensors of a PyTorch checkpoint. With `top_level_key` (`"state_dict"` for
/// Lightning checkpoints) the nested dict under that key is read.
pub fn read_pytorch_tensors(
    path: &Path,
    top_level_key: Option<&str>,
) -> Result<BTreeMap<String, RefTensor>, ImportError> {
    let err = |message: String| ImportError::Read {
        path: path.display().to_string(),
        message,
    };
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    if let Some(k) = top_level_key {
        store = store.with_top_level_key(k);
    }
    let tensors = store.get_all_tensors().map_err(|e| err(e.to_string()))?;
    convert(path, tensors)
}

/// Reads all tensors of a safetensors file (the Hugging Face layout).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, RefTensor>, ImportError> {
    let mut store = SafetensorsStore::from_file(path);
    let tensors = store.get_all_tensors().map_err(|e| ImportError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    convert(path, tensors)
}

/// The tensors of a store as f32 (F32, F64 and I64 accepted).
fn convert(
    path: &Path,
    tensors: &BTreeMap<String, burn_store::burn_pack::Tensor>,
) -> Result<BTreeMap<String, RefTensor>, ImportError> {
    let err = |message: String| ImportError::Read {
        path: path.display().to_string(),
        message,
    };
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let (_, dtype, shape, _, bytes) = t
            .clone()
            .into_parts()
            .map_err(|e| err(format!("{name}: {e:?}")))?;
        let b: &[u8] = &bytes;
        let data: Vec<f32> = match dtype {
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => b
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            DType::I64 => b
                .chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(ImportError::UnsupportedDtype {
                    key: name.clone(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        out.insert(
            name.clone(),
            RefTensor {
                shape: shape.to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// Fills `model` from a reference state dict through the explicit mapping `table`: every
/// reference key must be in the table, every mapped key present with the right shape, and every
/// parameter of `model` filled.
pub fn load_state_dict<M: Module>(
    model: M,
    table: &[KeyMap],
    tensors: &BTreeMap<String, RefTensor>,
) -> Result<M, ImportError> {
    let our_shapes: HashMap<String, Vec<usize>> = crate::rvt::params::list_tensors(&model)
        .into_iter()
        .map(|p| (p.path, p.shape))
        .collect();
    let known: std::collections::HashSet<&str> =
        table.iter().map(|m| m.reference.as_str()).collect();
    let unexpected: Vec<String> = tensors
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    if !unexpected.is_empty() {
        return Err(ImportError::UnexpectedKeys(unexpected));
    }
    let mut values: HashMap<String, TensorData> = HashMap::new();
    for m in table {
        let Some(ours) = &m.ours else { continue };
        let t = tensors
            .get(&m.reference)
            .ok_or_else(|| ImportError::MissingKey(m.reference.clone()))?;
        let ours_shape = our_shapes
            .get(ours)
            .ok_or_else(|| ImportError::Unmapped(vec![ours.clone()]))?;
        let expected: Vec<usize> = if m.transpose {
            ours_shape.iter().rev().copied().collect()
        } else {
            ours_shape.clone()
        };
        if t.shape != expected {
            return Err(ImportError::ShapeMismatch {
                key: m.reference.clone(),
                expected,
                found: t.shape.clone(),
            });
        }
        let (shape, data) = if m.transpose {
            transpose2(&t.shape, &t.data)
        } else {
            (t.shape.clone(), t.data.clone())
        };
        values.insert(ours.clone(), TensorData::new(data, shape));
    }
    let mut loader = Loader {
        stack: Vec::new(),
        values,
        unmapped: Vec::new(),
    };
    let model = model.map(&mut loader);
    if !loader.unmapped.is_empty() {
        return Err(ImportError::Unmapped(loader.unmapped));
    }
    if !loader.values.is_empty() {
        let mut left: Vec<String> = loader.values.into_keys().collect();
        left.sort();
        return Err(ImportError::Unmapped(left));
    }
    Ok(model)
}

struct Loader {
    stack: Vec<String>,
    values: HashMap<String, TensorData>,
    unmapped: Vec<String>,
}

impl ModuleMapper for Loader {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.stack.join(".");
        match self.values.remove(&path) {
            Some(data) => {
                let id = param.id;
                let tensor = Tensor::<D>::from_data(data, &param.lazy_device());
                param.transform_for_load(tensor, id)
            }
            None => {
                self.unmapped.push(path);
                param
            }
        }
    }
}
