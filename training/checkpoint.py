"""Checkpoints: everything a killed run needs to go on exactly where it was.

``RUN/checkpoint.pt`` (``torch.save`` of a dict, written to a temporary file beside it and
renamed into place, so a kill mid-write leaves the previous checkpoint whole) holds:

- ``format``: :data:`FORMAT`; ``variant`` and ``base``: the architecture and the model it
  started from;
- ``model`` and ``optimiser``: their ``state_dict``;
- ``progress``: :meth:`training.curriculum.Progress.to_dict` (stage, steps, validation losses);
- ``stream``: :meth:`training.data.TrainStream.state` (generators, pools, quotas);
- ``config``: the run's settings that must not change on resume (:func:`check_same_config`);
- ``provenance``: what the exported model's card will say (data fingerprint, curriculum, seed,
  code version, seconds trained so far).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import UsageError

FORMAT = "clipline-checkpoint/1"
NAME = "checkpoint.pt"


class InvalidCheckpoint(UsageError):
    """A file that is not a checkpoint of ``clipline train``."""

    reason = "invalid_checkpoint"


class OtherRun(UsageError):
    """A checkpoint of a run with other settings than the ones given to resume it."""

    reason = "other_run"


def save(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``; :class:`InvalidCheckpoint` when it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise InvalidCheckpoint(f"{path}: no such checkpoint") from exc
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        hint = (": an ONNX model is registered with `clipline models register`"
                if path.suffix == ".onnx" else "")
        raise InvalidCheckpoint(f"{path}: not a clipline train checkpoint{hint}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InvalidCheckpoint(f"{path}: not a {FORMAT} file")
    return state


def check_same_config(saved: Mapping[str, Any], given: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume the run of ``path`` with other settings than it started with."""
    changed = sorted(k for k in {*saved, *given} if saved.get(k) != given.get(k))
    if changed:
        detail = "; ".join(f"{k}: was {saved.get(k)!r}, now {given.get(k)!r}" for k in changed)
        raise OtherRun(
            f"{path} belongs to a run with other settings ({detail}); resume with the same "
            "options, or train into a new --out folder")
