"""From a checkpoint to a served model: ONNX, verified, then registered by name.

:func:`export_onnx` writes the module as the released models are shaped (input ``input.1``
float32 [N, 3, H, W] with a dynamic batch axis, seven float32 [N, 1, H, W] probability outputs,
the fused mask first), with the TorchScript-based exporter (``dynamo=False``: the default
dynamo exporter needs onnxscript, which this machine's registries do not give us for torch
2.13), then proves ONNX Runtime's masks equal to the module's on sample inputs
(:func:`training.u2net.check_against_onnx`). :func:`export_and_register` hands the file to
:func:`pipeline.model_store.register`, which adds the uint8 Triton graph (checked again), the
sha256 and the card with the run's provenance.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.model_store import RegisteredModel, register
from pipeline.models import get_spec, resolve
from training import checkpoint
from training.u2net import Agreement, U2Net, blend, check_against_onnx, from_onnx

OPSET = 17
EXPORT_TOLERANCE = 1e-4  # fused mask, 0..1: float32 rounding between two runtimes


class _Probabilities(nn.Module):
    """The module with a fixed forward (probabilities, a tuple) for the tracer."""

    def __init__(self, model: U2Net) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model(x))


def model_from_checkpoint(path: Path) -> tuple[U2Net, dict[str, Any]]:
    """The trained module of a checkpoint (eval mode, CPU) and the checkpoint's provenance.
    Raises :class:`training.checkpoint.InvalidCheckpoint`."""
    state = checkpoint.load(path)
    try:
        model = U2Net(str(state["variant"]))
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise checkpoint.InvalidCheckpoint(f"{path}: weights do not fit ({exc})") from exc
    provenance = dict(state.get("provenance") or {})
    provenance.setdefault("base", state.get("base"))
    return model.eval(), provenance


def export_onnx(model: U2Net, path: Path, *, size: tuple[int, int] = (320, 320),
                samples: int = 3, seed: int = 0) -> Agreement:
    """Write ``model`` to ``path`` as ONNX and check it against the module on ``samples``
    random normalised inputs; raises ``WeightMismatch`` beyond :data:`EXPORT_TOLERANCE`."""
    model = model.eval().cpu()
    h, w = size
    with warnings.catch_warnings():
        # The exporter's notice that dynamo is the new default (chosen against above).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            _Probabilities(model), (torch.zeros(1, 3, h, w),), str(path),
            input_names=["input.1"], output_names=[f"d{i}" for i in range(7)],
            dynamic_axes={"input.1": {0: "batch"}, **{f"d{i}": {0: "batch"} for i in range(7)}},
            opset_version=OPSET, dynamo=False)
    probe = np.random.default_rng(seed).normal(size=(samples, 3, h, w)).astype(np.float32)
    return check_against_onnx(model, path, probe, tolerance=EXPORT_TOLERANCE)


def export_and_register(checkpoint_path: Path, name: str, models_dir: Path, *,
                        replace: bool = False, blend_weight: float = 1.0,
                        base_onnx: Path | None = None,
                        extra: dict[str, Any] | None = None) -> tuple[RegisteredModel, Agreement]:
    """Export the checkpoint's module and register it as ``name`` in ``models_dir``. With
    ``blend_weight`` below 1 the weights are first moved back toward the base model's
    (:func:`training.u2net.blend`), read from ``base_onnx`` or else from the base's file in
    ``models_dir`` (``ModelError`` when it is not there)."""
    model, provenance = model_from_checkpoint(checkpoint_path)
    base = str(provenance.get("base") or "u2netp")
    if blend_weight != 1.0:
        if base_onnx is None:
            base_onnx = resolve(get_spec(base, models_dir), models_dir)
        blend(model, from_onnx(base_onnx, model.variant), blend_weight)
        provenance["blend"] = {"weight": blend_weight, "with": base}
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=models_dir) as tmp:
        onnx_path = Path(tmp) / f"{name}.onnx"
        agreement = export_onnx(model, onnx_path)
        provenance = {**provenance, "checkpoint": str(checkpoint_path.resolve()),
                      "export": {"opset": OPSET, "max_abs_vs_torch": agreement.max_abs},
                      **(extra or {})}
        registered = register(models_dir, name, onnx_path, base=base,
                              provenance=provenance, replace=replace)
    return registered, agreement
