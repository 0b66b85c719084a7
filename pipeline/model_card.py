"""The card of a trained model: ``NAME.model.json`` beside ``NAME.onnx`` in the models folder.

A model Clipline trained (``clipline train``), or one trained elsewhere and registered
(``clipline models register``), is known by its card. The card is what a built-in spec is for
u2netp: the file and its sha256, the input size, the normalisation and the mask output, plus
``base`` (the model it was trained from) and ``provenance``, a free-form object the trainer fills
(data fingerprint, curriculum, steps, seed, code version, training seconds...)::

    {"format": "clipline-model/1", "name": "shoes-v2", "filename": "shoes-v2.onnx",
     "input_size": [320, 320],
     "normalisation": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                       "scale": "image_max"},
     "output_index": 0, "sha256": "<64 hex>", "base": "u2netp",
     "provenance": {...}, "created": "2025-01-31T12:00:00+00:00"}

This module reads and writes cards and nothing else: it imports no other part of Clipline but the
errors and the JSON limits, so ``pipeline.models`` can turn a card into a spec and
``pipeline.model_store`` can write one. Every way a card can be wrong is a ``ModelError`` that
names the file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline import json_limits
from pipeline.errors import ModelError

FORMAT = "clipline-model/1"
CARD_SUFFIX = ".model.json"
MAX_CARD_BYTES = 1 << 20
MAX_SIDE = 4096
TRAINED_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# NAME-uint8 is the rewritten form's name and NAME.uint8.onnx its file: a trained model called
# that would be taken for (and its file would overwrite) another model's uint8 graph.
_RESERVED_ENDINGS = ("-uint8", ".uint8")
_SCALES = ("image_max", "fixed_255")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = frozenset({"format", "name", "filename", "input_size", "normalisation", "output_index",
                   "sha256", "base", "provenance", "created"})


@dataclass(frozen=True)
class ModelCard:
    name: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: str
    output_index: int
    sha256: str
    base: str
    created: str
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.name + ".onnx"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "name": self.name, "filename": self.filename,
            "input_size": list(self.input_size),
            "normalisation": {"mean": list(self.mean), "std": list(self.std),
                              "scale": self.scale},
            "output_index": self.output_index, "sha256": self.sha256, "base": self.base,
            "provenance": dict(self.provenance), "created": self.created,
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a trained model, or None when it can."""
    if not TRAINED_NAME.fullmatch(name):
        return ("a trained model's name is 1 to 63 of a-z, 0-9, '.', '_' and '-', starting "
                "with a letter or digit")
    if name.endswith(_RESERVED_ENDINGS):
        return "a name ending in -uint8 or .uint8 is kept for the uint8 forms of models"
    return None


def card_path(models_dir: Path, name: str) -> Path:
    return models_dir / (name + CARD_SUFFIX)


def card_names(models_dir: Path) -> list[str]:
    """The names of the cards in ``models_dir`` (sorted), from their file names alone."""
    if not models_dir.is_dir():
        return []
    names = (p.name.removesuffix(CARD_SUFFIX) for p in models_dir.glob("*" + CARD_SUFFIX))
    return sorted(n for n in names if name_problem(n) is None)


def read_card(models_dir: Path, name: str) -> ModelCard | None:
    """The card of ``name`` in ``models_dir``; None when there is none. A card that is there but
    cannot be read, or says something a card may not, is a ``ModelError`` naming the file."""
    path = card_path(models_dir, name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        data = json_limits.loads(raw, max_bytes=MAX_CARD_BYTES)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a model card: {exc}") from exc
    try:
        card = parse(data)
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from exc
    if card.name != name:
        raise ModelError(f"{path}: names the model {card.name!r}, not {name!r}")
    return card


def parse(data: object) -> ModelCard:
    """A card from its JSON value; ``ValueError`` saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("a model card is a JSON object")
    if data.get("format") != FORMAT:
        raise ValueError(f"format must be {FORMAT!r}, got {data.get('format')!r}")
    missing, unknown = sorted(_KEYS - data.keys()), sorted(data.keys() - _KEYS)
    if missing or unknown:
        raise ValueError("; ".join(
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
    name = _text(data, "name")
    if problem := name_problem(name):
        raise ValueError(f"name {name!r}: {problem}")
    if data["filename"] != name + ".onnx":
        raise ValueError(f"filename must be {name + '.onnx'!r}, got {data['filename']!r}")
    mean, std, scale = _normalisation(data["normalisation"])
    base = _text(data, "base")
    if not TRAINED_NAME.fullmatch(base):
        raise ValueError(f"base {base!r} is not a model name")
    if not isinstance(data["provenance"], dict):
        raise ValueError("provenance must be a JSON object")
    sha256 = _text(data, "sha256")
    if not _HEX64.fullmatch(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    return ModelCard(
        name=name, input_size=_size(data["input_size"]),
        mean=mean, std=std, scale=scale,
        output_index=_count(data["output_index"], "output_index"), sha256=sha256, base=base,
        created=_created(data["created"]), provenance=data["provenance"],
    )


def _normalisation(
    norm: object,
) -> tuple[tuple[float, float, float], tuple[float, float, float], str]:
    if not isinstance(norm, dict) or set(norm) != {"mean", "std", "scale"}:
        raise ValueError("normalisation must be an object of mean, std and scale")
    std = _floats(norm["std"], "normalisation.std")
    if min(std) <= 0:
        raise ValueError("normalisation.std must be positive")
    if norm["scale"] not in _SCALES:
        raise ValueError(f"normalisation.scale must be one of {', '.join(_SCALES)}")
    return _floats(norm["mean"], "normalisation.mean"), std, norm["scale"]


def _text(data: Mapping[str, object], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a whole number >= 0")
    return value


def _size(value: object) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("input_size must be [height, width]")
    h, w = (_count(v, "input_size") for v in value)
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ValueError(f"input_size must be between 1 and {MAX_SIDE} on each side")
    return h, w


def _floats(value: object, key: str) -> tuple[float, float, float]:
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) for v in value)):
        raise ValueError(f"{key} must be three finite numbers")
    a, b, c = (float(v) for v in value)
    return a, b, c


def _created(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("created must be an ISO 8601 UTC time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("created must be an ISO 8601 UTC time") from exc
    offset = when.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise ValueError("created must be a UTC time (+00:00 or Z)")
    return value
