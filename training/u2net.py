"""U²-Net and U²-Net-p as torch modules, filled from the released ONNX files.

The architecture is the one of Qin et al., "U²-Net: Going deeper with nested U-structure for
salient object detection", Pattern Recognition 106 (2020), as published with its weights in the
authors' repository (``u2net.py``: RSU-7…RSU-4 and the dilated RSU-4F blocks, six side outputs
fused by a 1x1 convolution, a sigmoid on each of the seven outputs). The released ONNX files
(rembg's; ``pipeline.models.U2NETP`` / ``U2NET``) were exported in eval mode, which folds every
batch normalisation into the convolution before it. So the modules here are that folded form: a
``REBNCONV`` is a 3x3 convolution with a bias and a ReLU, no BatchNorm; fine-tuning trains the
folded weights directly (no batch statistics to drift on the small batches of a CPU run).

Weights are read from the ONNX initializers without relying on their names (the folded ones are
numbered): the ONNX exporter writes nodes in execution order, so the n-th ``Conv`` node of the
graph is the n-th convolution this module runs, and each pairing is checked by shape.
:func:`check_against_onnx` proves the whole forward equal to ONNX Runtime's before training.

Shapes: input float32 [N, 3, H, W] normalised as the spec says (x / max(x), ImageNet mean and
std); outputs seven float32 [N, 1, H, W] in 0..1, the fused mask first. Upsampling is bilinear
with half-pixel centres (``align_corners=False``), as the graph's ``Resize`` nodes
(``pytorch_half_pixel``, linear).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the PyTorch convention)

# (kind, in, mid, out) of each stage, from the authors' U2NET / U2NETP classes: kind is the
# RSU height (7..4) or "4F", the dilated block.
StageSpec = tuple[int | str, int, int, int]
STAGES: dict[str, dict[str, StageSpec]] = {
    "u2netp": {
        "stage1": (7, 3, 16, 64), "stage2": (6, 64, 16, 64), "stage3": (5, 64, 16, 64),
        "stage4": (4, 64, 16, 64), "stage5": ("4F", 64, 16, 64), "stage6": ("4F", 64, 16, 64),
        "stage5d": ("4F", 128, 16, 64), "stage4d": (4, 128, 16, 64),
        "stage3d": (5, 128, 16, 64), "stage2d": (6, 128, 16, 64), "stage1d": (7, 128, 16, 64),
    },
    "u2net": {
        "stage1": (7, 3, 32, 64), "stage2": (6, 64, 32, 128), "stage3": (5, 128, 64, 256),
        "stage4": (4, 256, 128, 512), "stage5": ("4F", 512, 256, 512),
        "stage6": ("4F", 512, 256, 512), "stage5d": ("4F", 1024, 256, 512),
        "stage4d": (4, 1024, 128, 256), "stage3d": (5, 512, 64, 128),
        "stage2d": (6, 256, 32, 64), "stage1d": (7, 128, 16, 64),
    },
}
# The encoder: the stages that read the image downwards (the rest decode, then the sides fuse).
ENCODER = ("stage1", "stage2", "stage3", "stage4", "stage5", "stage6")
TUNE_PARTS = ("all", "decoder")
# Channels of the stage each side output reads: stage1d … stage5d, then stage6.
SIDES = {"u2netp": (64, 64, 64, 64, 64, 64), "u2net": (64, 64, 128, 256, 512, 512)}


class REBNCONV(nn.Module):
    """3x3 convolution (dilation ``dirate``, same padding) with its batch norm folded, then
    ReLU. [N, in, H, W] → [N, out, H, W]."""

    def __init__(self, in_ch: int, out_ch: int, dirate: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x))


def upsample_like(src: Tensor, tar: Tensor) -> Tensor:
    return F.interpolate(src, size=tar.shape[2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """Residual U-block of ``height`` levels (RSU-7 … RSU-4): an encoder of 3x3 convolutions
    with 2x2 max pooling (ceil mode), a dilation-2 bottom, a decoder that upsamples and
    concatenates; output = decoder + input projection. [N, in, H, W] → [N, out, H, W]."""

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.encoder = nn.ModuleList(
            [REBNCONV(out_ch, mid_ch)] + [REBNCONV(mid_ch, mid_ch) for _ in range(height - 2)])
        self.bottom = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.decoder = nn.ModuleList(
            [REBNCONV(mid_ch * 2, mid_ch) for _ in range(height - 2)]
            + [REBNCONV(mid_ch * 2, out_ch)])

    def forward(self, x: Tensor) -> Tensor:
        hxin = self.rebnconvin(x)
        skips = []
        hx = hxin
        for i, conv in enumerate(self.encoder):
            if i:
                hx = F.max_pool2d(hx, 2, stride=2, ceil_mode=True)
            hx = conv(hx)
            skips.append(hx)
        hx = self.bottom(hx)
        for i, conv in enumerate(self.decoder):
            skip = skips[-1 - i]
            if i:
                hx = upsample_like(hx, skip)
            hx = conv(torch.cat((hx, skip), 1))
        out: Tensor = hx + hxin
        return out


class RSU4F(nn.Module):
    """RSU-4F: the residual U-block with dilations 1, 2, 4, 8 instead of pooling (for the
    lowest resolutions). [N, in, H, W] → [N, out, H, W]."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.encoder = nn.ModuleList([REBNCONV(out_ch, mid_ch, 1), REBNCONV(mid_ch, mid_ch, 2),
                                      REBNCONV(mid_ch, mid_ch, 4)])
        self.bottom = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.decoder = nn.ModuleList([REBNCONV(mid_ch * 2, mid_ch, 4),
                                      REBNCONV(mid_ch * 2, mid_ch, 2),
                                      REBNCONV(mid_ch * 2, out_ch, 1)])

    def forward(self, x: Tensor) -> Tensor:
        hxin = self.rebnconvin(x)
        skips = []
        hx = hxin
        for conv in self.encoder:
            hx = conv(hx)
            skips.append(hx)
        hx = self.bottom(hx)
        for i, conv in enumerate(self.decoder):
            hx = conv(torch.cat((hx, skips[-1 - i]), 1))
        out: Tensor = hx + hxin
        return out


def _block(kind: int | str, in_ch: int, mid_ch: int, out_ch: int) -> nn.Module:
    return RSU4F(in_ch, mid_ch, out_ch) if kind == "4F" else RSU(int(kind), in_ch, mid_ch, out_ch)


class U2Net(nn.Module):
    """U²-Net (``variant="u2net"``, 44 M parameters) or U²-Net-p (``"u2netp"``, 1.1 M).

    ``forward`` returns the seven outputs (fused, then side 1…6) as probabilities; with
    ``logits=True`` before the sigmoid, for a numerically stable BCE."""

    def __init__(self, variant: str = "u2netp") -> None:
        super().__init__()
        if variant not in STAGES:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(STAGES)}")
        self.variant = variant
        self.stages = nn.ModuleDict({name: _block(*spec) for name, spec in STAGES[variant].items()})
        self.sides = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1) for c in SIDES[variant]])
        self.outconv = nn.Conv2d(6, 1, 1)

    def forward(self, x: Tensor, logits: bool = False) -> list[Tensor]:
        s = self.stages
        hx1 = s["stage1"](x)
        hx2 = s["stage2"](_pool(hx1))
        hx3 = s["stage3"](_pool(hx2))
        hx4 = s["stage4"](_pool(hx3))
        hx5 = s["stage5"](_pool(hx4))
        hx6 = s["stage6"](_pool(hx5))
        hx5d = s["stage5d"](torch.cat((upsample_like(hx6, hx5), hx5), 1))
        hx4d = s["stage4d"](torch.cat((upsample_like(hx5d, hx4), hx4), 1))
        hx3d = s["stage3d"](torch.cat((upsample_like(hx4d, hx3), hx3), 1))
        hx2d = s["stage2d"](torch.cat((upsample_like(hx3d, hx2), hx2), 1))
        hx1d = s["stage1d"](torch.cat((upsample_like(hx2d, hx1), hx1), 1))
        d1 = self.sides[0](hx1d)
        sides = [d1] + [upsample_like(conv(h), d1)
                        for conv, h in zip(self.sides[1:], (hx2d, hx3d, hx4d, hx5d, hx6),
                                           strict=True)]
        d0 = self.outconv(torch.cat(sides, 1))
        outs = [d0, *sides]
        return outs if logits else [torch.sigmoid(o) for o in outs]


def trainable(model: U2Net, part: str) -> list[nn.Parameter]:
    """Leave only ``part`` of ``model`` trainable and return its parameters: ``all``, or
    ``decoder`` (the encoder's stages frozen: gradients stop at the decoder, so a step also
    costs less). Keeping the pretrained encoder whole is the usual guard against fine-tuning
    distorting features the new data does not cover (Kumar et al. 2022, "Fine-Tuning can
    Distort Pretrained Features and Underperform Out-of-Distribution"). Raises ``ValueError``
    for another part."""
    if part not in TUNE_PARTS:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(TUNE_PARTS)}")
    for name, param in model.named_parameters():
        stage = name.split(".")[1] if name.startswith("stages.") else ""
        param.requires_grad_(part == "all" or stage not in ENCODER)
    return [p for p in model.parameters() if p.requires_grad]


def blend(tuned: U2Net, base: U2Net, weight: float) -> U2Net:
    """``tuned`` moved back toward ``base``: every weight becomes base + ``weight`` * (tuned -
    base), in place (returns ``tuned``). Weight-space ensembling of a fine-tuned model with
    the one it started from keeps much of the fine-tuning's gain on the new data while losing
    less on data it never saw (WiSE-FT: Wortsman et al. 2022, "Robust fine-tuning of
    zero-shot models", whose default mixing weight is 0.5). ``weight`` 1 leaves ``tuned`` as
    it is, 0 gives ``base``. Raises ``ValueError`` outside 0..1 or for other variants."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight {weight}: must be within 0..1")
    if tuned.variant != base.variant:
        raise ValueError(f"cannot blend {tuned.variant} with {base.variant}")
    own = base.state_dict()
    with torch.no_grad():
        for key, value in tuned.state_dict().items():
            value.copy_(own[key] + weight * (value - own[key]))
    return tuned


def _pool(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


# -- weights from the released ONNX ----------------------------------------------------------


class WeightMismatch(ValueError):
    """The ONNX graph does not have this module's convolutions, in order and shape."""


def _convs_in_run_order(model: U2Net, size: int = 64) -> list[nn.Conv2d]:
    order: list[nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return order


def load_onnx_weights(model: U2Net, onnx_path: Path) -> int:
    """Copy the weights of the released ONNX ``onnx_path`` into ``model``; returns the number
    of tensors copied. Raises :class:`WeightMismatch` when the graph's convolutions differ in
    count or shape from the module's."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                 for n in graph.node if n.op_type == "Constant" and n.attribute
                 and n.attribute[0].name == "value"}
    tensors = {**constants, **inits}
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    convs = _convs_in_run_order(model)
    if len(nodes) != len(convs):
        raise WeightMismatch(f"{onnx_path.name} has {len(nodes)} convolutions, the "
                             f"{model.variant} module {len(convs)}")
    copied = 0
    with torch.no_grad():
        for i, (node, conv) in enumerate(zip(nodes, convs, strict=True)):
            if len(node.input) < 3:
                raise WeightMismatch(f"convolution {i} of {onnx_path.name} has no bias")
            weight, bias = tensors[node.input[1]], tensors[node.input[2]]
            if tuple(weight.shape) != tuple(conv.weight.shape):
                raise WeightMismatch(f"convolution {i}: graph {tuple(weight.shape)}, module "
                                     f"{tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.array(weight, dtype=np.float32)))
            assert conv.bias is not None
            conv.bias.copy_(torch.from_numpy(np.array(bias, dtype=np.float32)))
            copied += 2
    return copied


@dataclass(frozen=True)
class Agreement:
    """How far the torch forward is from ONNX Runtime's on the same inputs (fused mask, 0..1)."""

    max_abs: float
    mean_abs: float
    images: int


def check_against_onnx(model: U2Net, onnx_path: Path, inputs: np.ndarray,
                       tolerance: float = 1e-4) -> Agreement:
    """Run ``inputs`` (float32 [N, 3, H, W], normalised) through ``model`` and through ONNX
    Runtime on ``onnx_path``; compare the fused masks. Raises :class:`WeightMismatch` when the
    largest difference exceeds ``tolerance``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    expected = np.concatenate([session.run(None, {name: inputs[i:i + 1]})[0]
                               for i in range(len(inputs))])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        got = model(torch.from_numpy(inputs))[0].numpy()
    model.train(was_training)
    diff = np.abs(got - expected)
    agreement = Agreement(float(diff.max()), float(diff.mean()), len(inputs))
    if agreement.max_abs > tolerance:
        raise WeightMismatch(f"torch and ONNX Runtime differ by up to {agreement.max_abs:.3g} "
                             f"(tolerance {tolerance:g}) on {len(inputs)} images")
    return agreement


def from_onnx(onnx_path: Path, variant: str) -> U2Net:
    """A ``variant`` module holding the weights of ``onnx_path``."""
    model = U2Net(variant)
    load_onnx_weights(model, onnx_path)
    return model
