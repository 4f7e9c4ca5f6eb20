//! ImageNet MiT weights: NVlabs `mit_b*.pth` (`torch.save` of the state dict) and Hugging Face
//! `SegformerModel` safetensors, every key mapped explicitly (a missing or unexpected key is an
//! error naming it).
//!
//! The Hugging Face layout is first renamed to NVlabs' (its separate `key` and `value` weights
//! concatenated into NVlabs' `kv`, keys first), then both go through one table.
//!
//! A stem with other than 3 input channels (the thermal + event stream has 2) starts from the
//! RGB stem: each of its k input channels gets the sum of the three RGB kernels divided by k.
//! A grey image fed to every channel then gives the stem the activations the same grey image
//! gives the RGB stem, so the pretrained statistics downstream still hold.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;

use super::{Mit, MitConfig};
use crate::torch_weights::{
    load_state_dict, read_pytorch_tensors, read_safetensors, ImportError, KeyMap, RefTensor, Table,
};

/// The ImageNet classifier of NVlabs checkpoints, read and dropped.
const NVLABS_HEAD: [&str; 2] = ["head.weight", "head.bias"];

/// NVlabs `state_dict` name -> our module path for `config` (they are the same names, Burn's
/// LayerNorm calling its weight and bias `gamma` and `beta`).
pub fn nvlabs_key_map(config: &MitConfig) -> Vec<KeyMap> {
    let mut t = Table::default();
    for s in 1..=4 {
        t.conv(
            &format!("patch_embed{s}.proj"),
            &format!("patch_embed{s}.proj"),
            true,
        );
        t.layer_norm(
            &format!("patch_embed{s}.norm"),
            &format!("patch_embed{s}.norm"),
        );
        for j in 0..config.depths[s - 1] {
            let b = format!("block{s}.{j}");
            t.layer_norm(&format!("{b}.norm1"), &format!("{b}.norm1"));
            for l in ["q", "kv", "proj"] {
                t.linear(&format!("{b}.attn.{l}"), &format!("{b}.attn.{l}"));
            }
            if config.sr_ratios[s - 1] > 1 {
                t.conv(&format!("{b}.attn.sr"), &format!("{b}.attn.sr"), true);
                t.layer_norm(&format!("{b}.attn.norm"), &format!("{b}.attn.norm"));
            }
            t.layer_norm(&format!("{b}.norm2"), &format!("{b}.norm2"));
            t.linear(&format!("{b}.mlp.fc1"), &format!("{b}.mlp.fc1"));
            t.conv(
                &format!("{b}.mlp.dwconv.dwconv"),
                &format!("{b}.mlp.dwconv.dwconv"),
                true,
            );
            t.linear(&format!("{b}.mlp.fc2"), &format!("{b}.mlp.fc2"));
        }
        t.layer_norm(&format!("norm{s}"), &format!("norm{s}"));
    }
    t.0
}

/// Where a Hugging Face tensor goes in NVlabs' layout.
enum Target {
    /// Renamed to this NVlabs key.
    Key(String),
    /// Half of NVlabs' `kv` (`key` rows first, then `value`), under this kv key.
    KvKeys(String),
    KvValues(String),
}

/// Renames a Hugging Face `SegformerModel` state dict to NVlabs names. Two layouts are read:
/// the Hub's and `save_pretrained`'s (`encoder.block.0.0.attention.self.query.weight`,
/// optionally under `segformer.` as in `SegformerForImageClassification`, whose `classifier.*`
/// is dropped), and transformers 5's in-memory `state_dict()`
/// (`stages.0.blocks.0.attention.q_proj.weight`). Any other key is an error.
pub fn hugging_face_to_nvlabs(
    tensors: BTreeMap<String, RefTensor>,
) -> Result<BTreeMap<String, RefTensor>, ImportError> {
    let mut out = BTreeMap::new();
    let mut keys: BTreeMap<String, RefTensor> = BTreeMap::new();
    let mut values: BTreeMap<String, RefTensor> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for (name, t) in tensors {
        if name.starts_with("classifier.") {
            continue;
        }
        match hugging_face_target(&name) {
            Some(Target::Key(k)) => {
                out.insert(k, t);
            }
            Some(Target::KvKeys(k)) => {
                keys.insert(k, t);
            }
            Some(Target::KvValues(k)) => {
                values.insert(k, t);
            }
            None => unexpected.push(name),
        }
    }
    if !unexpected.is_empty() {
        return Err(ImportError::UnexpectedKeys(unexpected));
    }
    for (kv, k) in keys {
        let v = values
            .remove(&kv)
            .ok_or_else(|| ImportError::MissingKey(kv.replace(".kv.", ".value.")))?;
        if k.shape != v.shape {
            return Err(ImportError::ShapeMismatch {
                key: kv.replace(".kv.", ".value."),
                expected: k.shape,
                found: v.shape,
            });
        }
        // [C_out, …] rows: keys, then values.
        let mut shape = k.shape.clone();
        shape[0] += v.shape[0];
        let mut data = k.data;
        data.extend(v.data);
        out.insert(kv, RefTensor { shape, data });
    }
    if let Some(kv) = values.into_keys().next() {
        return Err(ImportError::MissingKey(kv.replace(".kv.", ".key.")));
    }
    Ok(out)
}

/// The NVlabs place of one Hugging Face key, either layout.
fn hugging_face_target(name: &str) -> Option<Target> {
    let key = name.strip_prefix("segformer.").unwrap_or(name);
    let parts: Vec<&str> = key.split('.').collect();
    let (s, j, tail): (usize, Option<&str>, &[&str]) = match parts.as_slice() {
        ["encoder", "patch_embeddings", i, tail @ ..]
        | ["stages", i, "patch_embeddings", tail @ ..] => {
            let s = stage(i)?;
            return match tail {
                ["proj", p] => Some(Target::Key(format!("patch_embed{s}.proj.{p}"))),
                ["layer_norm", p] => Some(Target::Key(format!("patch_embed{s}.norm.{p}"))),
                _ => None,
            };
        }
        ["encoder", "layer_norm", i, p] | ["stages", i, "layer_norm", p] => {
            return Some(Target::Key(format!("norm{}.{p}", stage(i)?)));
        }
        ["encoder", "block", i, j, tail @ ..] | ["stages", i, "blocks", j, tail @ ..] => {
            (stage(i)?, Some(*j), tail)
        }
        _ => return None,
    };
    let b = format!("block{s}.{}", j?);
    let key = |m: &str, p: &str| Some(Target::Key(format!("{b}.{m}.{p}")));
    match tail {
        ["layer_norm_1" | "layernorm_before", p] => key("norm1", p),
        ["layer_norm_2" | "layernorm_after", p] => key("norm2", p),
        ["attention", "self", "query", p] | ["attention", "q_proj", p] => key("attn.q", p),
        ["attention", "self", "sr", p]
        | ["attention", "sequence_reduction", "sequence_reduction", p] => key("attn.sr", p),
        ["attention", "self", "layer_norm", p]
        | ["attention", "sequence_reduction", "layer_norm", p] => key("attn.norm", p),
        ["attention", "output", "dense", p] | ["attention", "o_proj", p] => key("attn.proj", p),
        ["mlp", "dense1" | "fc1", p] => key("mlp.fc1", p),
        ["mlp", "dwconv", "dwconv", p] => key("mlp.dwconv.dwconv", p),
        ["mlp", "dense2" | "fc2", p] => key("mlp.fc2", p),
        ["attention", "self", "key", p] | ["attention", "k_proj", p] => {
            Some(Target::KvKeys(format!("{b}.attn.kv.{p}")))
        }
        ["attention", "self", "value", p] | ["attention", "v_proj", p] => {
            Some(Target::KvValues(format!("{b}.attn.kv.{p}")))
        }
        _ => None,
    }
}

/// Hugging Face's 0-based stage index -> NVlabs' 1-based stage number.
fn stage(i: &str) -> Option<usize> {
    i.parse::<usize>().ok().filter(|&i| i < 4).map(|i| i + 1)
}

/// Reads MiT weights (`.safetensors`: Hugging Face layout; anything else: an NVlabs
/// `torch.save` file, a bare state dict or one under `state_dict`) into an encoder of `config`.
/// A stem with other than 3 channels is made from the RGB stem (module docs).
pub fn import_mit_checkpoint(
    path: impl AsRef<Path>,
    config: &MitConfig,
    device: &Device,
) -> Result<Mit, ImportError> {
    if config.attention != crate::attention::AttentionKind::Sr {
        return Err(ImportError::Architecture(format!(
            "MiT checkpoints hold spatial-reduction attention; a backbone with `attention = \"{}\"` cannot take them",
            config.attention.name()
        )));
    }
    let path = path.as_ref();
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let mut tensors = if is_safetensors {
        hugging_face_to_nvlabs(read_safetensors(path)?)?
    } else {
        let bare = read_pytorch_tensors(path, None)?;
        if bare.keys().any(|k| k.starts_with("patch_embed1.")) {
            bare
        } else {
            read_pytorch_tensors(path, Some("state_dict"))?
        }
    };
    for head in NVLABS_HEAD {
        tensors.remove(head);
    }
    adapt_stem(&mut tensors, config.in_channels)?;
    load_state_dict(config.init(device), &nvlabs_key_map(config), &tensors)
}

/// Rewrites the 3-channel stem `patch_embed1.proj.weight` for `channels` inputs: each channel
/// gets the sum of the RGB kernels divided by `channels` (as [`Mit::with_stem_channels`]).
fn adapt_stem(
    tensors: &mut BTreeMap<String, RefTensor>,
    channels: usize,
) -> Result<(), ImportError> {
    const KEY: &str = "patch_embed1.proj.weight";
    let Some(stem) = tensors.get_mut(KEY) else {
        return Err(ImportError::MissingKey(KEY.into()));
    };
    let &[out, cin, kh, kw] = stem.shape.as_slice() else {
        return Err(ImportError::ShapeMismatch {
            key: KEY.into(),
            expected: vec![0, 3, 7, 7],
            found: stem.shape.clone(),
        });
    };
    if cin == channels {
        return Ok(());
    }
    if cin != 3 {
        return Err(ImportError::ShapeMismatch {
            key: KEY.into(),
            expected: vec![out, 3, kh, kw],
            found: stem.shape.clone(),
        });
    }
    let plane = kh * kw;
    let mut data = Vec::with_capacity(out * channels * plane);
    for o in 0..out {
        let rgb = &stem.data[o * 3 * plane..(o + 1) * 3 * plane];
        let summed: Vec<f32> = (0..plane)
            .map(|p| (rgb[p] + rgb[plane + p] + rgb[2 * plane + p]) / channels as f32)
            .collect();
        for _ in 0..channels {
            data.extend_from_slice(&summed);
        }
    }
    *stem = RefTensor {
        shape: vec![out, channels, kh, kw],
        data,
    };
    Ok(())
}
