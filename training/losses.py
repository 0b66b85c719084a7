"""Training losses: the U²-Net authors' deep supervision, and a teacher term.

- :func:`side_bce`: binary cross-entropy of every one of the seven outputs (the fused mask and
  the six side outputs) against the true alpha, summed: the authors' ``muti_bce_loss_fusion``
  (U-2-Net repository, ``u2net_train.py``; Qin et al. 2020, §3.3, equal weights). Computed on
  logits (``binary_cross_entropy_with_logits``), which is the same loss without the sigmoid's
  saturation at 0 and 1. Soft alpha is a valid BCE target: edges learn their partial coverage.
- :func:`side_bce_iou`: the same sum with a soft IoU term added to each output's BCE, the
  hybrid loss of the same authors' BASNet (Qin et al. 2019, §3.4, less its SSIM term): BCE is a
  mean over pixels, so on frames that are mostly background it can buy a lower loss by turning
  the whole subject down a little; IoU is a ratio over the subject and charges for exactly
  that (measured here: 40 steps of BCE alone took the released u2netp's mean foreground
  probability on training composites from 0.98 to 0.89, docs/QUALITY.md).
- :func:`teacher_bce`: the same sum against a teacher's fused mask (probabilities 0..1) on real
  unlabelled photos, a soft-target distillation (Hinton et al. 2015, at temperature 1): a small
  student learns a large model's behaviour on real pictures, where composites cannot teach it.

Shapes: logits, a list of seven float32 [N, 1, H, W]; targets float32 [N, 1, H, W] in 0..1.
Returns a scalar tensor (mean over pixels, summed over outputs).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812 (the PyTorch convention)


def side_bce(logits: list[Tensor], alpha: Tensor) -> Tensor:
    """Sum over the seven outputs of the mean BCE against ``alpha``."""
    return torch.stack([F.binary_cross_entropy_with_logits(o, alpha) for o in logits]).sum()


def soft_iou(logits: Tensor, alpha: Tensor) -> Tensor:
    """1 - soft IoU of sigmoid(``logits``) with ``alpha``, per image (over H, W), averaged;
    a 1-pixel smoothing term keeps empty masks defined."""
    p = torch.sigmoid(logits)
    inter = (p * alpha).sum(dim=(2, 3))
    union = (p + alpha - p * alpha).sum(dim=(2, 3))
    return (1.0 - (inter + 1.0) / (union + 1.0)).mean()


def side_bce_iou(logits: list[Tensor], alpha: Tensor) -> Tensor:
    """Sum over the seven outputs of BCE plus soft IoU against ``alpha``."""
    return torch.stack([F.binary_cross_entropy_with_logits(o, alpha) + soft_iou(o, alpha)
                        for o in logits]).sum()


LOSSES = {"bce": side_bce, "bce+iou": side_bce_iou}


def teacher_bce(logits: list[Tensor], teacher: Tensor) -> Tensor:
    """Sum over the seven outputs of the mean BCE against the teacher's fused mask."""
    return side_bce(logits, teacher.clamp(0.0, 1.0))


def fused_bce(logits: list[Tensor], alpha: Tensor) -> Tensor:
    """BCE of the fused output only: what the served mask is judged by (validation)."""
    return F.binary_cross_entropy_with_logits(logits[0], alpha)
