//! Import of official RVT PyTorch (Lightning) checkpoints (reading and applying the weights:
//! [`crate::torch_weights`]).
//!
//! Every reference parameter name is mapped explicitly to ours by [`reference_key_map`]
//! (generated from the config: stages, CSP depth, head levels); nothing is matched by
//! heuristics. A missing or unexpected key is an error naming it, a shape mismatch names the
//! key and both shapes. PyTorch `Linear` weights (`[out, in]`) are transposed to Burn's
//! `[in, out]`; BatchNorm `num_batches_tracked` is read-only bookkeeping and ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::Device;

pub use crate::torch_weights::{
    load_state_dict, read_pytorch_tensors, ImportError, KeyMap, RefTensor,
};
use crate::torch_weights::{transpose2, Table};

use super::config::RvtConfig;
use super::params::list_tensors_with_data;
use super::Rvt;

/// Prefix of the model's keys in RVT's Lightning checkpoints (`self.mdl`).
pub const LIGHTNING_PREFIX: &str = "mdl.";

impl Table {
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

/// Reads an official RVT Lightning checkpoint (`{"state_dict": {"mdl.<name>": tensor}, ...}`)
/// into a model built from `config`.
pub fn import_rvt_checkpoint(
    path: impl AsRef<Path>,
    config: &RvtConfig,
    device: &Device,
) -> Result<Rvt, ImportError> {
    if config.ssm_memory {
        return Err(ImportError::Architecture(
            "RVT's checkpoints have LSTM memory; a model with `memory = \"ssm\"` cannot take them"
                .into(),
        ));
    }
    if let Some(kind) = config.attention {
        return Err(ImportError::Architecture(format!(
            "RVT's checkpoints have window and grid attention; a model with `attention = \"{}\"` cannot take them",
            kind.name()
        )));
    }
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
    load_state_dict(config.init(device), &reference_key_map(config), tensors)
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
