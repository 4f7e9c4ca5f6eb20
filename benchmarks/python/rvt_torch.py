"""RVT (recurrent MaxViT backbone + YOLOX PAFPN + YOLOX head) and the YOLOX loss in PyTorch.

The PyTorch side of prism's training-throughput benchmark: the same network as
`crates/prism-models/src/rvt/*.rs` (and so as uzh-rpg/RVT @ b80f568), layer for layer and in the
same order, and the YOLOX training loss RVT uses (SimOTA assignment, IoU loss, BCE for objectness
and classes, L1 off). Written for the benchmark, not copied from RVT or YOLOX.

    model = Rvt(RvtConfig.preset("tiny", partition_size=(8, 10)))
    raw, states = model(x, states)        # x [N, 20, H, W]; raw [N, A, 5 + K]; states: 4 x (h, c)
    loss, parts = yolox_loss(raw_all, labels, (H, W), num_classes)

`python rvt_torch.py --check` prints the parameter counts per part and asserts them against the
reference counts at Gen1 size (256x320, 2 classes), runs a forward/loss/backward smoke test and,
where shared/fixtures/rvt-official exists, reproduces the official RVT outputs from its checkpoint.
`--rvt-src DIR` (a checkout of uzh-rpg/RVT) also compares the loss and its gradients with RVT's
own `YOLOXHead.get_losses`.
"""
import argparse
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Configuration (mirrors prism-models' RvtConfig)
# --------------------------------------------------------------------------------------------


@dataclass
class RvtConfig:
    embed_dim: int  # 32 tiny, 48 small, 64 base
    dim_head: int  # 32 tiny/base, 24 small
    fpn_depth: float  # 0.33 tiny/small, 0.67 base
    num_classes: int = 2
    partition_size: Tuple[int, int] = (8, 10)
    in_channels: int = 20
    dim_multiplier: Tuple[int, int, int, int] = (1, 2, 4, 8)
    mlp_ratio: int = 4
    ls_init_value: float = 1e-5
    norm_eps: float = 1e-5
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    use_sdpa: bool = False  # F.scaled_dot_product_attention instead of RVT's explicit softmax
    # How the LSTM splits its gates: "slices" (z[:, 0:d] ...) or "tensor_split", the calls RVT's
    # own DWSConvLSTM2d makes (torch.onnx turns those into Loop + sequence blocks).
    lstm_split: str = "slices"
    strides: Tuple[int, int, int] = field(default=(8, 16, 32))

    SIZES = {"tiny": (32, 32, 0.33), "small": (48, 24, 0.33), "base": (64, 32, 0.67)}

    @classmethod
    def preset(cls, size: str, num_classes: int = 2, partition_size=(8, 10), **kw) -> "RvtConfig":
        e, dh, depth = cls.SIZES[size]
        return cls(embed_dim=e, dim_head=dh, fpn_depth=depth, num_classes=num_classes,
                   partition_size=tuple(partition_size), **kw)

    @staticmethod
    def partition_for(height: int, width: int, split_32: int = 1) -> Tuple[int, int]:
        """RVT's rule (config/modifier.py): the stride-32 map split `split_32` times per side."""
        assert height % (32 * split_32) == 0 and width % (32 * split_32) == 0, (height, width)
        return height // (32 * split_32), width // (32 * split_32)

    def stage_dims(self) -> List[int]:
        return [m * self.embed_dim for m in self.dim_multiplier]

    def csp_depth(self) -> int:
        return round(3 * self.fpn_depth)

    def head_hidden(self) -> int:
        return int(256 * self.stage_dims()[3] / 1024)


# --------------------------------------------------------------------------------------------
# Backbone: downsampling, window/grid attention, LSTM
# --------------------------------------------------------------------------------------------


class ConvDownsampling(nn.Module):
    """Overlapping strided conv (no bias), NCHW -> NHWC, LayerNorm (`ConvDownsampling_Cf2Cl`)."""

    def __init__(self, dim_in: int, dim_out: int, factor: int, eps: float):
        super().__init__()
        k = 2 * (factor - 1) + 1  # 7 for factor 4, 3 for factor 2
        self.conv = nn.Conv2d(dim_in, dim_out, k, stride=factor, padding=k // 2, bias=False)
        self.norm = nn.LayerNorm(dim_out, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


def window_partition(x: Tensor, p: Tuple[int, int]) -> Tensor:
    b, h, w, c = x.shape
    assert h % p[0] == 0 and w % p[1] == 0, f"feature map {h}x{w} not divisible by {p}"
    x = x.view(b, h // p[0], p[0], w // p[1], p[1], c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, p[0] * p[1], c)


def window_reverse(x: Tensor, p: Tuple[int, int], h: int, w: int) -> Tensor:
    c = x.shape[-1]
    x = x.view(-1, h // p[0], w // p[1], p[0], p[1], c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def grid_partition(x: Tensor, p: Tuple[int, int]) -> Tensor:
    b, h, w, c = x.shape
    assert h % p[0] == 0 and w % p[1] == 0, f"feature map {h}x{w} not divisible by {p}"
    x = x.view(b, p[0], h // p[0], p[1], w // p[1], c).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, p[0] * p[1], c)


def grid_reverse(x: Tensor, p: Tuple[int, int], h: int, w: int) -> Tensor:
    c = x.shape[-1]
    x = x.view(-1, h // p[0], w // p[1], p[0], p[1], c).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(-1, h, w, c)


class SelfAttention(nn.Module):
    """timm `AttentionCl` layout: qkv viewed as [B', N, heads, 3*dim_head] (q, k, v per head)."""

    def __init__(self, dim: int, dim_head: int, use_sdpa: bool = False):
        super().__init__()
        assert dim % dim_head == 0
        self.num_heads, self.dim_head = dim // dim_head, dim_head
        self.scale = dim_head ** -0.5
        self.use_sdpa = use_sdpa
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, self.num_heads, 3 * self.dim_head).transpose(1, 2).chunk(3, dim=3)
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Linear(C, rC) -> GELU (exact erf) -> Linear(rC, C); not gated."""

    def __init__(self, dim: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * ratio)
        self.fc2 = nn.Linear(dim * ratio, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PartitionAttention(nn.Module):
    """`x += LS1(attn(partition(LN1(x))))`, `x += LS2(MLP(LN2(x)))`, channels-last."""

    def __init__(self, cfg: RvtConfig, dim: int, grid: bool, skip_first_norm: bool):
        super().__init__()
        self.norm1 = nn.Identity() if skip_first_norm else nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.self_attn = SelfAttention(dim, cfg.dim_head, cfg.use_sdpa)
        self.ls1 = LayerScale(dim, cfg.ls_init_value)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, cfg.mlp_ratio)
        self.ls2 = LayerScale(dim, cfg.ls_init_value)
        self.grid = grid
        self.p = tuple(cfg.partition_size)

    def forward(self, x: Tensor) -> Tensor:
        _, h, w, _ = x.shape
        y = self.norm1(x)
        if self.grid:
            y = grid_reverse(self.self_attn(grid_partition(y, self.p)), self.p, h, w)
        else:
            y = window_reverse(self.self_attn(window_partition(y, self.p)), self.p, h, w)
        x = x + self.ls1(y)
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPair(nn.Module):
    """Window block, then grid block (`MaxVitAttentionPairCl`)."""

    def __init__(self, cfg: RvtConfig, dim: int, skip_first_norm: bool):
        super().__init__()
        self.att_window = PartitionAttention(cfg, dim, grid=False, skip_first_norm=skip_first_norm)
        self.att_grid = PartitionAttention(cfg, dim, grid=True, skip_first_norm=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.att_grid(self.att_window(x))


class ConvLstm(nn.Module):
    """Per-pixel LSTM (`DWSConvLSTM2d`, dws_conv False): z = conv1x1(cat(x, h)), 2C -> 4C with bias;
    gates in the order forget, input, output (sigmoid), then the tanh candidate. `split` picks
    how z is cut into gates (see `RvtConfig.lstm_split`); the numbers are the same."""

    def __init__(self, dim: int, split: str = "slices"):
        super().__init__()
        assert split in ("slices", "tensor_split"), split
        self.dim = dim
        self.split = split
        self.conv1x1 = nn.Conv2d(2 * dim, 4 * dim, 1)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        z = self.conv1x1(torch.cat((x, h), dim=1))
        d = self.dim
        if self.split == "tensor_split":
            gates, cell_input = torch.tensor_split(z, [3 * d], dim=1)
            f, i, o = torch.tensor_split(torch.sigmoid(gates), 3, dim=1)
            g = torch.tanh(cell_input)
        else:
            f = torch.sigmoid(z[:, 0:d])
            i = torch.sigmoid(z[:, d:2 * d])
            o = torch.sigmoid(z[:, 2 * d:3 * d])
            g = torch.tanh(z[:, 3 * d:4 * d])
        c = f * c + i * g
        return o * torch.tanh(c), c


class RvtStage(nn.Module):
    def __init__(self, cfg: RvtConfig, dim_in: int, dim: int, factor: int):
        super().__init__()
        self.downsample_cf2cl = ConvDownsampling(dim_in, dim, factor, cfg.norm_eps)
        # The downsampling output is already normed: the (only) window block skips its norm1.
        self.att_blocks = nn.ModuleList([AttentionPair(cfg, dim, skip_first_norm=True)])
        self.lstm = ConvLstm(dim, cfg.lstm_split)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        x = self.downsample_cf2cl(x)
        for blk in self.att_blocks:
            x = blk(x)
        return self.lstm(x.permute(0, 3, 1, 2), h, c)


State = List[Tuple[Tensor, Tensor]]


class RvtBackbone(nn.Module):
    def __init__(self, cfg: RvtConfig):
        super().__init__()
        dims = cfg.stage_dims()
        ins = [cfg.in_channels] + dims[:3]
        self.stages = nn.ModuleList(
            RvtStage(cfg, ins[s], dims[s], 4 if s == 0 else 2) for s in range(4))

    def forward(self, x: Tensor, states: Optional[State]) -> Tuple[List[Tensor], State]:
        feats, new_states = [], []
        for s, stage in enumerate(self.stages):
            if states is None:
                n, _, hh, ww = x.shape
                f = 4 if s == 0 else 2
                z = x.new_zeros(n, stage.lstm.dim, hh // f, ww // f)
                h, c = z, z
            else:
                h, c = states[s]
            h, c = stage(x, h, c)
            x = h
            feats.append(h)
            new_states.append((h, c))
        return feats, new_states


# --------------------------------------------------------------------------------------------
# PAFPN and head (YOLOX blocks: Conv no bias -> BatchNorm -> SiLU)
# --------------------------------------------------------------------------------------------


class BaseConv(nn.Module):
    def __init__(self, cfg: RvtConfig, c_in: int, c_out: int, k: int, s: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=s, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=cfg.bn_eps, momentum=cfg.bn_momentum)

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, cfg: RvtConfig, c: int, shortcut: bool):
        super().__init__()
        self.conv1 = BaseConv(cfg, c, c, 1)
        self.conv2 = BaseConv(cfg, c, c, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.shortcut else y


class CspLayer(nn.Module):
    def __init__(self, cfg: RvtConfig, c_in: int, c_out: int, n: int, shortcut: bool = False):
        super().__init__()
        hidden = c_out // 2
        self.conv1 = BaseConv(cfg, c_in, hidden, 1)
        self.conv2 = BaseConv(cfg, c_in, hidden, 1)
        self.conv3 = BaseConv(cfg, 2 * hidden, c_out, 1)
        self.m = nn.Sequential(*[Bottleneck(cfg, hidden, shortcut) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), dim=1))


def upsample2x(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")  # == nearest-exact for x2


class YoloPafpn(nn.Module):
    def __init__(self, cfg: RvtConfig):
        super().__init__()
        d = cfg.stage_dims()
        c0, c1, c2 = d[1], d[2], d[3]
        n = cfg.csp_depth()
        self.lateral_conv0 = BaseConv(cfg, c2, c1, 1)
        self.c3_p4 = CspLayer(cfg, 2 * c1, c1, n)
        self.reduce_conv1 = BaseConv(cfg, c1, c0, 1)
        self.c3_p3 = CspLayer(cfg, 2 * c0, c0, n)
        self.bu_conv2 = BaseConv(cfg, c0, c0, 3, 2)
        self.c3_n3 = CspLayer(cfg, 2 * c0, c1, n)
        self.bu_conv1 = BaseConv(cfg, c1, c1, 3, 2)
        self.c3_n4 = CspLayer(cfg, 2 * c1, c2, n)

    def forward(self, x2: Tensor, x1: Tensor, x0: Tensor) -> List[Tensor]:
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.c3_p4(torch.cat((upsample2x(fpn_out0), x1), dim=1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.c3_p3(torch.cat((upsample2x(fpn_out1), x2), dim=1))
        pan_out1 = self.c3_n3(torch.cat((self.bu_conv2(pan_out2), fpn_out1), dim=1))
        pan_out0 = self.c3_n4(torch.cat((self.bu_conv1(pan_out1), fpn_out0), dim=1))
        return [pan_out2, pan_out1, pan_out0]


class YoloxHead(nn.Module):
    """Decoupled head; returns raw `[N, A, 5 + K]` = (box regression 4, obj logit, class logits),
    anchors level by level (strides 8, 16, 32), row-major inside a level."""

    def __init__(self, cfg: RvtConfig):
        super().__init__()
        d = cfg.stage_dims()
        hid, k = cfg.head_hidden(), cfg.num_classes
        self.num_classes = k
        self.stems = nn.ModuleList(BaseConv(cfg, c, hid, 1) for c in (d[1], d[2], d[3]))
        tower = lambda: nn.Sequential(BaseConv(cfg, hid, hid, 3), BaseConv(cfg, hid, hid, 3))  # noqa: E731
        self.cls_convs = nn.ModuleList(tower() for _ in range(3))
        self.reg_convs = nn.ModuleList(tower() for _ in range(3))
        self.cls_preds = nn.ModuleList(nn.Conv2d(hid, k, 1) for _ in range(3))
        self.reg_preds = nn.ModuleList(nn.Conv2d(hid, 4, 1) for _ in range(3))
        self.obj_preds = nn.ModuleList(nn.Conv2d(hid, 1, 1) for _ in range(3))
        prior = -math.log((1 - 0.01) / 0.01)
        with torch.no_grad():
            for conv in list(self.cls_preds) + list(self.obj_preds):
                conv.bias.fill_(prior)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        outs = []
        for lvl, x in enumerate(feats):
            x = self.stems[lvl](x)
            cls = self.cls_convs[lvl](x)
            reg = self.reg_convs[lvl](x)
            out = torch.cat((self.reg_preds[lvl](reg), self.obj_preds[lvl](reg), self.cls_preds[lvl](cls)), 1)
            outs.append(out.flatten(2))
        return torch.cat(outs, dim=2).permute(0, 2, 1)


class Rvt(nn.Module):
    def __init__(self, cfg: RvtConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = RvtBackbone(cfg)
        self.fpn = YoloPafpn(cfg)
        self.yolox_head = YoloxHead(cfg)

    def forward_backbone(self, x: Tensor, states: Optional[State]) -> Tuple[List[Tensor], State]:
        return self.backbone(x, states)

    def forward_detect(self, feats: Sequence[Tensor]) -> Tensor:
        """Stage features (h1..h4, or just h2..h4 at the end) -> raw `[N, A, 5 + K]`."""
        h2, h3, h4 = feats[-3:]
        return self.yolox_head(self.fpn(h2, h3, h4))

    def forward(self, x: Tensor, states: Optional[State] = None) -> Tuple[Tensor, State]:
        """One window: `x [N, 20, H, W]`, states (None = zeros) -> raw `[N, A, 5+K]`, new states."""
        feats, states = self.forward_backbone(x, states)
        return self.forward_detect(feats), states

    def param_breakdown(self) -> dict:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        parts = {"backbone": count(self.backbone), "fpn": count(self.fpn), "head": count(self.yolox_head)}
        parts["total"] = sum(parts.values())
        return parts


def detach_states(states: State) -> State:
    return [(h.detach(), c.detach()) for h, c in states]


# --------------------------------------------------------------------------------------------
# YOLOX loss (SimOTA), as RVT trains it: IoU loss x5 + objectness BCE + class BCE, L1 off
# --------------------------------------------------------------------------------------------

CENTER_RADIUS = 1.5
CANDIDATE_TOPK = 10
# RVT's copy of YOLOX (and prism-train) use 1e6, YOLOX <= 0.1 used 1e5; any value far above the
# other costs selects the same anchors.
NOT_IN_CENTER_COST = 1e6
REG_WEIGHT = 5.0


def anchor_grid(hw: Tuple[int, int], strides: Sequence[int], device=None, dtype=torch.float32):
    """(x_shift, y_shift, stride) per anchor, `[A]` each, in the head's anchor order."""
    xs, ys, ss = [], [], []
    for s in strides:
        h, w = hw[0] // s, hw[1] // s
        yv, xv = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                                torch.arange(w, device=device, dtype=dtype), indexing="ij")
        xs.append(xv.reshape(-1))
        ys.append(yv.reshape(-1))
        ss.append(torch.full((h * w,), float(s), device=device, dtype=dtype))
    return torch.cat(xs), torch.cat(ys), torch.cat(ss)


def decode_boxes(raw: Tensor, grid) -> Tensor:
    """Raw regression `[N, A, >=4]` -> (cx, cy, w, h) in input pixels (differentiable)."""
    gx, gy, gs = grid
    xy = (raw[..., 0:2] + torch.stack((gx, gy), dim=-1)) * gs[:, None]
    wh = torch.exp(raw[..., 2:4]) * gs[:, None]
    return torch.cat((xy, wh), dim=-1)


def pairwise_iou_cxcywh(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box in `a [G, 4]` with every box in `b [M, 4]` (cx, cy, w, h) -> `[G, M]`."""
    tl = torch.max(a[:, None, :2] - a[:, None, 2:] / 2, b[None, :, :2] - b[None, :, 2:] / 2)
    br = torch.min(a[:, None, :2] + a[:, None, 2:] / 2, b[None, :, :2] + b[None, :, 2:] / 2)
    inter = torch.prod(br - tl, dim=2) * (tl < br).all(dim=2).to(a.dtype)
    area_a = torch.prod(a[:, 2:], dim=1)
    area_b = torch.prod(b[:, 2:], dim=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def iou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """YOLOX `IOUloss(reduction='none', loss_type='iou')`: 1 - iou^2 per matched pair."""
    tl = torch.max(pred[:, :2] - pred[:, 2:] / 2, target[:, :2] - target[:, 2:] / 2)
    br = torch.min(pred[:, :2] + pred[:, 2:] / 2, target[:, :2] + target[:, 2:] / 2)
    area_p = torch.prod(pred[:, 2:], 1)
    area_g = torch.prod(target[:, 2:], 1)
    en = (tl < br).to(tl.dtype).prod(dim=1)
    area_i = torch.prod(br - tl, 1) * en
    iou = area_i / (area_p + area_g - area_i + 1e-16)
    return 1 - iou ** 2


@torch.no_grad()
def simota_assign(boxes: Tensor, obj: Tensor, cls: Tensor, gt: Tensor, grid, num_classes: int):
    """SimOTA for one image. boxes [A, 4] decoded, obj [A, 1] and cls [A, K] logits, gt [G, 5]
    (class, cx, cy, w, h). Returns fg_mask [A] bool, matched gt index and IoU per fg anchor."""
    gx, gy, gs = grid
    gt_cls, gt_box = gt[:, 0].long(), gt[:, 1:5]
    cx, cy = (gx + 0.5) * gs, (gy + 0.5) * gs
    r = gs * CENTER_RADIUS
    # anchor centre strictly inside the (2r x 2r) square around the gt centre
    in_center = ((cx[None] - (gt_box[:, 0:1] - r[None]) > 0) & ((gt_box[:, 0:1] + r[None]) - cx[None] > 0)
                 & (cy[None] - (gt_box[:, 1:2] - r[None]) > 0) & ((gt_box[:, 1:2] + r[None]) - cy[None] > 0))
    fg_candidates = in_center.any(dim=0)
    cand = fg_candidates.nonzero(as_tuple=True)[0]
    geometry = in_center[:, cand]  # [G, M]
    num_gt, m = gt.shape[0], cand.numel()
    if m == 0:
        return torch.zeros_like(fg_candidates), cand.new_zeros(0), boxes.new_zeros(0)
    ious = pairwise_iou_cxcywh(gt_box, boxes[cand])  # [G, M]
    iou_cost = -torch.log(ious + 1e-8)
    p = (cls[cand].float().sigmoid() * obj[cand].float().sigmoid()).sqrt()  # [M, K]
    onehot = F.one_hot(gt_cls, num_classes).float()  # [G, K]
    cls_cost = F.binary_cross_entropy(p[None].expand(num_gt, m, num_classes),
                                      onehot[:, None].expand(num_gt, m, num_classes),
                                      reduction="none").sum(-1)
    cost = cls_cost + 3.0 * iou_cost + NOT_IN_CENTER_COST * (~geometry).float()
    # dynamic k: sum of the top-10 candidate IoUs per gt, truncated, at least 1
    topk_ious, _ = torch.topk(ious, min(CANDIDATE_TOPK, m), dim=1)
    dynamic_ks = torch.clamp(topk_ious.sum(1).int(), min=1)
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(num_gt):
        _, idx = torch.topk(cost[g], k=int(dynamic_ks[g]), largest=False)
        matching[g, idx] = True
    # an anchor matched to several gts keeps only its cheapest one
    multi = matching.sum(0) > 1
    if multi.any():
        best = cost[:, multi].argmin(0)
        matching[:, multi] = False
        matching[best, multi.nonzero(as_tuple=True)[0]] = True
    fg_in = matching.any(0)  # [M]
    matched_gt = matching[:, fg_in].float().argmax(0)
    matched_iou = (matching.float() * ious).sum(0)[fg_in]
    fg_mask = torch.zeros_like(fg_candidates)
    fg_mask[cand[fg_in]] = True
    return fg_mask, matched_gt, matched_iou


def yolox_loss(raw: Tensor, labels: Sequence[Tensor], hw: Tuple[int, int], num_classes: int,
               strides=(8, 16, 32)):
    """YOLOX loss over a batch of images. raw `[N, A, 5 + K]` (head output), labels: N tensors
    `[G_i, 5]` (class, cx, cy, w, h in input pixels; G_i may be 0). Normalised by the number of
    foreground anchors of the whole batch (at least 1): loss = 5 * iou + obj + cls."""
    n = raw.shape[0]
    assert len(labels) == n, (len(labels), n)
    grid = anchor_grid(hw, strides, raw.device, raw.dtype)
    boxes = decode_boxes(raw, grid)
    obj_logits, cls_logits = raw[..., 4:5], raw[..., 5:]
    obj_targets, fg_masks, reg_targets, cls_targets = [], [], [], []
    for i in range(n):
        gt = labels[i].to(raw.device, raw.dtype)
        if gt.shape[0] == 0:
            fg = torch.zeros(raw.shape[1], dtype=torch.bool, device=raw.device)
            reg_targets.append(raw.new_zeros(0, 4))
            cls_targets.append(raw.new_zeros(0, num_classes))
        else:
            fg, matched_gt, matched_iou = simota_assign(
                boxes[i].detach(), obj_logits[i].detach(), cls_logits[i].detach(), gt, grid, num_classes)
            reg_targets.append(gt[matched_gt, 1:5])
            cls_targets.append(F.one_hot(gt[matched_gt, 0].long(), num_classes).to(raw.dtype)
                               * matched_iou[:, None])
        fg_masks.append(fg)
        obj_targets.append(fg.to(raw.dtype)[:, None])
    fg_all = torch.cat(fg_masks)
    num_fg = max(int(fg_all.sum()), 1)
    loss_iou = iou_loss(boxes.reshape(-1, 4)[fg_all], torch.cat(reg_targets)).sum() / num_fg
    loss_obj = F.binary_cross_entropy_with_logits(
        obj_logits.reshape(-1, 1), torch.cat(obj_targets), reduction="none").sum() / num_fg
    loss_cls = F.binary_cross_entropy_with_logits(
        cls_logits.reshape(-1, num_classes)[fg_all], torch.cat(cls_targets), reduction="none").sum() / num_fg
    loss = REG_WEIGHT * loss_iou + loss_obj + loss_cls
    return loss, {"iou": REG_WEIGHT * float(loss_iou.detach()), "obj": float(loss_obj.detach()),
                  "cls": float(loss_cls.detach()), "num_fg": num_fg}


# --------------------------------------------------------------------------------------------
# Official checkpoints (RVT's Lightning layout, `mdl.` prefix) and the eval-mode decode
# --------------------------------------------------------------------------------------------


def load_rvt_checkpoint(model: Rvt, path: str) -> None:
    """Loads an official RVT checkpoint (`{"state_dict": {"mdl.<name>": tensor}}`) into `model`."""
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("mdl.").replace(".mlp.net.0.0.", ".mlp.fc1.").replace(".mlp.net.2.", ".mlp.fc2.")
        out[k.replace("fpn.C3_", "fpn.c3_")] = v
    model.load_state_dict(out, strict=True)


def decode_outputs(raw: Tensor, hw: Tuple[int, int], strides=(8, 16, 32)) -> Tensor:
    """Raw `[N, A, 5+K]` -> (cx, cy, w, h) in pixels, sigmoid(obj), sigmoid(cls) (eval output)."""
    grid = anchor_grid(hw, strides, raw.device, raw.dtype)
    return torch.cat((decode_boxes(raw, grid), raw[..., 4:].sigmoid()), dim=-1)


FIXTURE = "/work/shared/fixtures/rvt-official"


def check_against_official(fixture_dir: str = FIXTURE) -> bool:
    """Reproduces the official RVT outputs of the shared fixture (2 windows, carried state)."""
    import os
    ckpt = os.path.join(fixture_dir, "rvt-tiny-gen1.ckpt")
    io = os.path.join(fixture_dir, "rvt-tiny-gen1-io.npz")
    if not (os.path.exists(ckpt) and os.path.exists(io)):
        print(f"official fixture not found under {fixture_dir}: skipped")
        return False
    import numpy as np
    ref = np.load(io)
    model = Rvt(RvtConfig.preset("tiny")).eval()
    load_rvt_checkpoint(model, ckpt)
    worst = 0.0  # max over all outputs of |got - want| / (1e-4 * |want| + 1e-5): <= 1 passes

    def compare(got, want):
        nonlocal worst
        worst = max(worst, float(np.max(np.abs(got - want) / (1e-4 * np.abs(want) + 1e-5))))

    with torch.no_grad():
        states = None
        for t in range(2):
            raw, states = model(torch.from_numpy(ref[f"x{t}"].astype(np.float32)), states)
            compare(decode_outputs(raw, (256, 320)).numpy(), ref[f"detections{t}"])
        for s, (h, c) in enumerate(states):
            compare(h.numpy(), ref[f"h{s + 1}_after1"])
            compare(c.numpy(), ref[f"c{s + 1}_after1"])
    print("official RVT fixture (tiny, 2 windows, carried state): detections and states within "
          f"rtol 1e-4 + atol 1e-5 (worst at {worst:.2f} of the tolerance)")
    assert worst <= 1.0, worst
    return True


def check_loss_against_rvt(rvt_src: str, trials: int = 5) -> None:
    """Compares `yolox_loss` and its gradients with RVT's own `YOLOXHead.get_losses` (training
    mode) on random FPN features and labels; `rvt_src` is a checkout of uzh-rpg/RVT."""
    import sys
    import types
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))  # only NMS needs it
    sys.path.insert(0, rvt_src)
    from models.detection.yolox.models.yolo_head import YOLOXHead  # noqa: E402
    torch.manual_seed(0)
    mine = YoloxHead(RvtConfig.preset("tiny"))
    with torch.no_grad():
        for p in mine.parameters():
            p.add_(0.05 * torch.randn_like(p))  # break the symmetric init
    ref = YOLOXHead(num_classes=2, strides=(8, 16, 32), in_channels=(64, 128, 256))
    ref.load_state_dict(mine.state_dict(), strict=True)
    mine.train()
    ref.train()
    gen = torch.Generator().manual_seed(3)
    names = [n for n, _ in mine.named_parameters()]
    for trial in range(trials):
        n = 4
        feats = [torch.randn(n, 64, 32, 40), torch.randn(n, 128, 16, 20), torch.randn(n, 256, 8, 10)]
        labels = []
        for i in range(n):
            k = int(torch.randint(0, 6, (1,), generator=gen)) if i else 0  # item 0 has no box
            cls = torch.randint(0, 2, (k,), generator=gen).float()
            wh = 8 + torch.rand(k, 2, generator=gen) * 120
            cxy = torch.rand(k, 2, generator=gen) * torch.tensor([320.0, 256.0])
            labels.append(torch.cat([cls[:, None], cxy, wh], 1))
        padded = torch.zeros(n, max(max(len(lab) for lab in labels), 1), 5)
        for i, lab in enumerate(labels):
            padded[i, :len(lab)] = lab
        loss, _ = yolox_loss(mine(feats), labels, (256, 320), 2)
        _, ref_losses = ref(feats, padded)
        g_mine = torch.autograd.grad(loss, [dict(mine.named_parameters())[k] for k in names])
        g_ref = torch.autograd.grad(ref_losses["loss"], [dict(ref.named_parameters())[k] for k in names])
        dg = max(float((a - b).abs().max()) for a, b in zip(g_mine, g_ref))
        print(f"loss vs RVT YOLOXHead, trial {trial}: ours {float(loss.detach()):.6f} "
              f"RVT {float(ref_losses['loss'].detach()):.6f}, max grad difference {dg:.1e}")
        assert abs(float(loss.detach()) - float(ref_losses["loss"].detach())) < 1e-4 * float(loss.detach())
        assert dg < 1e-5


# --------------------------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------------------------

EXPECTED = {  # Gen1 size (256x320), 2 classes: backbone, fpn, head, total
    "tiny": (3_220_032, 710_784, 474_325, 4_405_141),
    "small": (7_209_312, 1_596_096, 1_064_757, 9_870_165),
    "base": (12_784_768, 3_860_992, 1_890_709, 18_536_469),
}


def check():
    torch.manual_seed(0)
    for size, expected in EXPECTED.items():
        model = Rvt(RvtConfig.preset(size, num_classes=2, partition_size=(8, 10)))
        p = model.param_breakdown()
        got = (p["backbone"], p["fpn"], p["head"], p["total"])
        print(f"rvt-{size}: backbone {got[0]:,} fpn {got[1]:,} head {got[2]:,} total {got[3]:,}")
        assert got == expected, f"rvt-{size}: {got} != {expected}"
    # A forward pass with carried state and one loss + backward on tiny, Gen1 size.
    model = Rvt(RvtConfig.preset("tiny"))
    x = torch.randint(0, 11, (1, 20, 256, 320)).float()
    raw, states = model(x, None)
    assert raw.shape == (1, 1680, 7), raw.shape
    assert [tuple(h.shape) for h, _ in states] == [(1, 32, 64, 80), (1, 64, 32, 40), (1, 128, 16, 20),
                                                    (1, 256, 8, 10)]
    raw2, _ = model(x, states)
    labels = [torch.tensor([[0, 100.0, 120.0, 40.0, 30.0], [1, 200.0, 60.0, 20.0, 50.0]])]
    loss, parts = yolox_loss(raw2, labels, (256, 320), 2)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and parts["num_fg"] > 0, parts
    print(f"forward x2 + loss OK: raw {tuple(raw2.shape)}, loss {float(loss.detach()):.4f} {parts}")
    # RVT's tensor_split gate split gives the same numbers as the slices.
    split = Rvt(RvtConfig.preset("tiny", lstm_split="tensor_split"))
    split.load_state_dict(model.state_dict())
    with torch.no_grad():
        a, sa = model(x, None)
        b, sb = split(x, None)
    assert torch.equal(a, b) and all(torch.equal(p, q) for hp, hq in zip(sa, sb) for p, q in zip(hp, hq))
    print("lstm_split tensor_split == slices")
    check_against_official()
    print("check passed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="assert parameter counts and run a smoke test")
    ap.add_argument("--rvt-src", metavar="DIR",
                    help="with --check: also compare the loss with RVT's YOLOXHead from this checkout")
    a = ap.parse_args()
    if a.check:
        check()
        if a.rvt_src:
            check_loss_against_rvt(a.rvt_src)
    else:
        ap.print_help()
