"""Reference MiT stage outputs from the PyPI `transformers` package's SegformerModel.

usage: segformer_reference.py VARIANT OUT_DIR   (VARIANT: b0 … b5)

Builds SegformerModel with MiT-VARIANT's configuration (NVlabs mix_transformer.py values),
random initialisation (offline, seed 0), then moves every weight off its initial value
(+0.02 N(0,1); LayerNorm gains around 1) so that every path matters. Writes to OUT_DIR:
  hf/model.safetensors   `save_pretrained`: the layout of the Hub's files (`encoder.block.…`)
  hf-v5.safetensors      `state_dict()` as transformers 5 names it in memory (`stages.…`)
  nvlabs.pth        the same weights under NVlabs names (torch.save of a bare state dict,
                    as NVlabs' mit_b*.pth), renamed here independently of prism, plus an
                    ImageNet-style `head.*` classifier that an import must drop
  io.npz            x [1, 3, 128, 160] and s1 … s4, the four stage outputs (NCHW)
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import SegformerConfig, SegformerModel

variant, out = sys.argv[1], sys.argv[2]
wide = [64, 128, 320, 512]
dims, depths = {
    "b0": ([32, 64, 160, 256], [2, 2, 2, 2]),
    "b1": (wide, [2, 2, 2, 2]),
    "b2": (wide, [3, 4, 6, 3]),
    "b3": (wide, [3, 4, 18, 3]),
    "b4": (wide, [3, 8, 27, 3]),
    "b5": (wide, [3, 6, 40, 3]),
}[variant]
config = SegformerConfig(
    num_channels=3,
    num_encoder_blocks=4,
    depths=depths,
    sr_ratios=[8, 4, 2, 1],
    hidden_sizes=dims,
    patch_sizes=[7, 3, 3, 3],
    strides=[4, 2, 2, 2],
    num_attention_heads=[1, 2, 5, 8],
    mlp_ratios=[4, 4, 4, 4],
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    drop_path_rate=0.0,
    layer_norm_eps=1e-6,
    reshape_last_stage=True,
)
torch.manual_seed(0)
model = SegformerModel(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        p.add_(0.02 * torch.randn_like(p))
os.makedirs(out, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "hf-v5.safetensors"))
model.save_pretrained(os.path.join(out, "hf"))
from safetensors import safe_open

with safe_open(os.path.join(out, "hf", "model.safetensors"), "pt") as f:
    state = {k: f.get_tensor(k) for k in f.keys()}


def nvlabs_name(key):
    """The NVlabs mix_transformer.py name of a SegformerModel key (None: split kv)."""
    p = key.split(".")
    assert p[0] == "encoder", key
    if p[1] == "patch_embeddings":
        return f"patch_embed{int(p[2]) + 1}.{ {'proj': 'proj', 'layer_norm': 'norm'}[p[3]] }.{p[4]}"
    if p[1] == "layer_norm":
        return f"norm{int(p[2]) + 1}.{p[3]}"
    b = f"block{int(p[2]) + 1}.{p[3]}"
    rest = ".".join(p[4:])
    table = {
        "layer_norm_1": "norm1", "layer_norm_2": "norm2",
        "attention.self.query": "attn.q", "attention.self.sr": "attn.sr",
        "attention.self.layer_norm": "attn.norm", "attention.output.dense": "attn.proj",
        "mlp.dense1": "mlp.fc1", "mlp.dwconv.dwconv": "mlp.dwconv.dwconv", "mlp.dense2": "mlp.fc2",
    }
    mod, leaf = rest.rsplit(".", 1)
    if mod in ("attention.self.key", "attention.self.value"):
        return None
    return f"{b}.{table[mod]}.{leaf}"


nv = {}
for k, v in state.items():
    n = nvlabs_name(k)
    if n is not None:
        nv[n] = v
    elif k.endswith("key.weight") or k.endswith("key.bias"):
        leaf = k.rsplit(".", 1)[1]
        value = state[k.replace(".key.", ".value.")]
        base = nvlabs_name(k.replace(".key.", ".query.")).replace("attn.q.", "attn.kv.")
        nv[base] = torch.cat([v, value], 0)
nv["head.weight"] = torch.randn(1000, dims[3])
nv["head.bias"] = torch.zeros(1000)
torch.save(nv, os.path.join(out, "nvlabs.pth"))

x = torch.randn(1, 3, 128, 160)
with torch.no_grad():
    hidden = model(x, output_hidden_states=True).hidden_states
np.savez(os.path.join(out, "io.npz"), x=x.numpy(), **{f"s{i + 1}": h.numpy() for i, h in enumerate(hidden)})
print(len(state), "tensors;", [tuple(h.shape) for h in hidden])
