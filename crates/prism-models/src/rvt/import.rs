//! Import of official RVT PyTorch (Lightning) checkpoints.
//!
//! Every reference parameter name is mapped explicitly to ours by [`reference_key_map`]
//! (generated from the config: stages, CSP depth, head levels); nothing is matched by
//! heuristics. A missing or unexpected key is an error naming it, a shape mismatch names the
//! key and both shapes. PyTorch `Linear` weights (`[out, in]`) are transposed to Burn's
//! `[in, out]`; BatchNorm `num_batches_tracked` is read-only bookkeeping and ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_store::{ModuleStore, PytorchStore};

use super::config::RvtConfig;
use super::params::list_tensors_with_data;
use super::Rvt;

/// Prefix of the model's keys in RVT's Lightning checkpoints (`self.mdl`).
pub const LIGHTNING_PREFIX: &str = "mdl.";

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
struct Table(Vec<KeyMap>);

impl Table {
    fn add(&mut self, r: String, o: String, transpose: bool) {
        self.0.push(KeyMap {
            reference: r,
            ours: Some(o),
            transpose,
        });
    }
    fn ignore(&mut self, r: String) {
        self.0.push(KeyMap {
            reference: r,
            ours: None,
            transpose: false,
        });
    }
    fn layer_norm(&mut self, r: &str, o: &str) {
        self.add(format!("{r}.weight"), format!("{o}.gamma"), false);
        self.add(format!("{r}.bias"), format!("{o}.beta"), false);
    }
    fn linear(&mut self, r: &str, o: &str) {
        self.add(format!("{r}.weight"), format!("{o}.weight"), true);
        self.add(format!("{r}.bias"), format!("{o}.bias"), false);
    }
    fn conv(&mut self, r: &str, o: &str, bias: bool) {
        self.add(format!("{r}.weight"), format!("{o}.weight"), false);
        if bias {
            self.add(format!("{r}.bias"), format!("{o}.bias"), false);
        }
    }
    fn batch_norm(&mut self, r: &str, o: &str) {
        self.add(format!("{r}.weight"), format!("{o}.gamma"), false);
        self.add(format!("{r}.bias"), format!("{o}.beta"), false);
        self.add(
            format!("{r}.running_mean"),
            format!("{o}.running_mean"),
            false,
        );
        self.add(
            format!("{r}.running_var"),
            format!("{o}.running_var"),
            false,
        );
        self.ignore(format!("{r}.num_batches_tracked"));
    }
    fn base_conv(&mut self, r: &str, o: &str) {
        self.conv(&format!("{r}.conv"), &format!("{o}.conv"), false);
        self.batch_norm(&format!("{r}.bn"), &format!("{o}.bn"));
    }
    fn csp(&mut self, r: &str, o: &str, n: usize) {
        for c in ["conv1", "conv2", "conv3"] {
            self.base_conv(&format!("{r}.{c}"), &format!("{o}.{c}"));
        }
        for i in 0..n {
            for c in ["conv1", "conv2"] {
                self.base_conv(&format!("{r}.m.{i}.{c}"), &format!("{o}.m.{i}.{c}"));
            }
        }
    }
    fn attention(&mut self, r: &str, o: &str, with_norm1: bool) {
        if with_norm1 {
            self.layer_norm(&format!("{r}.norm1"), &format!("{o}.norm1"));
        }
        self.linear(&format!("{r}.self_attn.qkv"), &format!("{o}.self_attn.qkv"));
        self.linear(
            &format!("{r}.self_attn.proj"),
            &format!("{o}.self_attn.proj"),
        );
        self.add(format!("{r}.ls1.gamma"), format!("{o}.ls1.gamma"), false);
        self.layer_norm(&format!("{r}.norm2"), &format!("{o}.norm2"));
        self.linear(&format!("{r}.mlp.net.0.0"), &format!("{o}.mlp.fc1"));
        self.linear(&format!("{r}.mlp.net.2"), &format!("{o}.mlp.fc2"));
        self.add(format!("{r}.ls2.gamma"), format!("{o}.ls2.gamma"), false);
    }
}

/// The complete, explicit mapping between the reference `state_dict` names (without the
/// `mdl.` prefix) and our parameter paths for `config`.
pub fn reference_key_map(config: &RvtConfig) -> Vec<KeyMap> {
    let mut t = Table::default();
    for s in 0..4 {
        let r = format!("backbone.stages.{s}");
        let o = format!("backbone.stages.{s}");
        t.conv(
            &format!("{r}.downsample_cf2cl.conv"),
            &format!("{o}.downsample_cf2cl.conv"),
            false,
        );
        t.layer_norm(
            &format!("{r}.downsample_cf2cl.norm"),
            &format!("{o}.downsample_cf2cl.norm"),
        );
        // One attention pair per stage; its window block skips norm1 (input already normed).
        t.attention(
            &format!("{r}.att_blocks.0.att_window"),
            &format!("{o}.att_blocks.0.att_window"),
            false,
        );
        t.attention(
            &format!("{r}.att_blocks.0.att_grid"),
            &format!("{o}.att_blocks.0.att_grid"),
            true,
        );
        if config.lstm_dws_conv {
            t.conv(
                &format!("{r}.lstm.conv3x3_dws"),
                &format!("{o}.lstm.conv3x3_dws"),
                true,
            );
        }
        t.conv(
            &format!("{r}.lstm.conv1x1"),
            &format!("{o}.lstm.conv1x1"),
            true,
        );
    }
    let n = config.csp_depth();
    t.base_conv("fpn.lateral_conv0", "fpn.lateral_conv0");
    t.csp("fpn.C3_p4", "fpn.c3_p4", n);
    t.base_conv("fpn.reduce_conv1", "fpn.reduce_conv1");
    t.csp("fpn.C3_p3", "fpn.c3_p3", n);
    t.base_conv("fpn.bu_conv2", "fpn.bu_conv2");
    t.csp("fpn.C3_n3", "fpn.c3_n3", n);
    t.base_conv("fpn.bu_conv1", "fpn.bu_conv1");
    t.csp("fpn.C3_n4", "fpn.c3_n4", n);
    for l in 0..3 {
        t.base_conv(
            &format!("yolox_head.stems.{l}"),
            &format!("yolox_head.stems.{l}"),
        );
        for j in 0..2 {
            t.base_conv(
                &format!("yolox_head.cls_convs.{l}.{j}"),
                &format!("yolox_head.cls_convs.{l}.{j}"),
            );
            t.base_conv(
                &format!("yolox_head.reg_convs.{l}.{j}"),
                &format!("yolox_head.reg_convs.{l}.{j}"),
            );
        }
        for p in ["cls_preds", "reg_preds", "obj_preds"] {
            t.conv(
                &format!("yolox_head.{p}.{l}"),
                &format!("yolox_head.{p}.{l}"),
                true,
            );
        }
    }
    t.0
}

fn transpose2(shape: &[usize], data: &[f32]) -> (Vec<usize>, Vec<f32>) {
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

/// Reads an official RVT Lightning checkpoint (`{"state_dict": {"mdl.<name>": tensor}, ...}`)
/// into a model built from `config`.
pub fn import_rvt_checkpoint(
    path: impl AsRef<Path>,
    config: &RvtConfig,
    device: &Device,
) -> Result<Rvt, ImportError> {
    let tensors = read_pytorch_tensors(path.as_ref(), Some("state_dict"))?;
    let mut stripped = BTreeMap::new();
    let mut foreign = Vec::new();
    for (k, v) in tensors {
        match k.strip_prefix(LIGHTNING_PREFIX) {
            Some(s) => {
                stripped.insert(s.to_string(), v);
            }
            None => foreign.push(k),
        }
    }
    if stripped.is_empty() && !foreign.is_empty() {
        return Err(ImportError::Prefix {
            expected: LIGHTNING_PREFIX,
            count: foreign.len(),
            examples: foreign.iter().take(3).cloned().collect(),
        });
    }
    if !foreign.is_empty() {
        return Err(ImportError::UnexpectedKeys(foreign));
    }
    load_rvt_state_dict(&stripped, config, device)
}

/// Builds a model of `config` from a reference state dict (names without the `mdl.` prefix).
pub fn load_rvt_state_dict(
    tensors: &BTreeMap<String, RefTensor>,
    config: &RvtConfig,
    device: &Device,
) -> Result<Rvt, ImportError> {
    let model = config.init(device);
    let our_shapes: HashMap<String, Vec<usize>> = super::params::list_tensors(&model)
        .into_iter()
        .map(|p| (p.path, p.shape))
        .collect();
    let table = reference_key_map(config);
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
    for m in &table {
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

/// Our model's tensors under their reference names and in the reference layout: the inverse
/// of the import (`num_batches_tracked` is written as 0).
pub fn export_reference_state_dict(model: &Rvt, config: &RvtConfig) -> BTreeMap<String, RefTensor> {
    let ours: HashMap<String, (Vec<usize>, Vec<f32>)> = list_tensors_with_data(model)
        .into_iter()
        .map(|(p, d)| {
            let v = d.convert::<f32>().try_into_vec::<f32>().unwrap_or_default();
            (p.path, (p.shape, v))
        })
        .collect();
    let mut out = BTreeMap::new();
    for m in reference_key_map(config) {
        let t = match &m.ours {
            None => RefTensor {
                shape: vec![],
                data: vec![0.0],
            },
            Some(o) => match ours.get(o) {
                Some((shape, data)) if m.transpose => {
                    let (s, d) = transpose2(shape, data);
                    RefTensor { shape: s, data: d }
                }
                Some((shape, data)) => RefTensor {
                    shape: shape.clone(),
                    data: data.clone(),
                },
                None => continue,
            },
        };
        out.insert(m.reference, t);
    }
    out
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
