"""An evaluation set on disk, read and checked before any model runs.

Two kinds, one layout (the contract with ``clipline datasets compose``)::

    SET/
      set.json                 composites only (format "clipline-set/1")
      images/<stem>.<ext>      the input (a composite writes RGB PNG; a real set may hold JPEG)
      masks/<stem>.png         the true alpha, 8-bit grey 0..255 (binary 0/255 in real sets)
      foreground/<stem>.png    composites only: the true foreground colours, RGB

A composite's ``set.json`` gives each item's class; it must say ``"split": "eval"`` (a set
of training objects is refused unless the caller insists). A real set (no ``set.json``,
davis-dev say) is one class, named after its folder unless the caller names it.

Every problem is a :class:`InvalidEvalSet` naming the file: an image without a mask, a mask
without an image, sizes that differ, a file Pillow cannot read, two images with one stem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from pipeline.errors import UsageError
from pipeline.run_files import IMAGE_SUFFIXES

SET_FORMAT = "clipline-set/1"
SET_FILE = "set.json"


class InvalidEvalSet(UsageError):
    """A set that cannot be evaluated as it is; the message names the file and the problem."""

    reason = "invalid_eval_set"


@dataclass(frozen=True)
class SetItem:
    """One image of a set, with its ground truth. ``foreground`` is None in real sets."""

    stem: str
    class_name: str
    image: Path
    mask: Path
    foreground: Path | None
    size: tuple[int, int]
    """(width, height) in pixels, the same for the image, the mask and the foreground."""


@dataclass(frozen=True)
class EvalSet:
    name: str
    root: Path
    kind: str
    """"composite" (with set.json) or "real"."""
    items: tuple[SetItem, ...]
    fingerprint: str
    """sha256 (hex) over every item's class and decoded pixels: see ``fingerprint``."""
    meta: dict[str, Any] = field(default_factory=dict)
    """set.json without its items (composites), else empty."""

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def class_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.class_name] = counts.get(item.class_name, 0) + 1
        return dict(sorted(counts.items()))


def load_set(root: Path, *, class_name: str | None = None, allow_train: bool = False) -> EvalSet:
    """Read and check the set at ``root``.

    ``class_name`` names the one class of a real set (default: the folder's name); a
    composite's classes come from its set.json and are not renamed. ``allow_train`` lets a
    composite of split "train" through (never evaluate on training objects by accident)."""
    root = root.resolve()
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise InvalidEvalSet(f"{root} is not an evaluation set: it needs images/ and masks/")
    images = _images_by_stem(root / "images")
    meta: dict[str, Any] = {}
    if (root / SET_FILE).exists():
        meta, classes = _read_set_json(root / SET_FILE, allow_train)
        kind = "composite"
        missing = sorted(set(classes) - set(images))
        extra = sorted(set(images) - set(classes))
        if missing:
            raise InvalidEvalSet(f"{root / SET_FILE}: item {missing[0]!r} has no image in images/")
        if extra:
            raise InvalidEvalSet(f"{images[extra[0]]}: not an item of {root / SET_FILE}")
    else:
        kind = "real"
        classes = dict.fromkeys(images, class_name or root.name)
    masks = {p.stem: p for p in (root / "masks").iterdir() if not p.name.startswith(".")}
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise InvalidEvalSet(f"{masks[orphans[0]]}: a mask without an image")
    items = tuple(
        _item(root, stem, classes[stem], images[stem], kind == "composite")
        for stem in sorted(images)
    )
    if not items:
        raise InvalidEvalSet(f"{root / 'images'} holds no image")
    return EvalSet(name=root.name, root=root, kind=kind, items=items,
                   fingerprint=fingerprint(root, items), meta=meta)


def fingerprint(root: Path, items: tuple[SetItem, ...]) -> str:
    """sha256 (hex) over, by stem, each item's stem, the sha256 of its decoded image, mask and
    (composites) foreground pixels, and (composites) the class set.json gives it. Equal
    fingerprints: the same pictures and truth, whatever the folder is called, where it lies,
    which code version wrote set.json or how the PNG encoder packed the bytes. (A real set's
    class is only its folder's name or ``--class``: not part of what was measured.)"""
    composite = (root / SET_FILE).exists()
    digest = hashlib.sha256(b"clipline-set-fingerprint/2\n")
    for item in sorted(items, key=lambda i: i.stem):
        parts = [item.stem, _pixels_sha(item.image), _pixels_sha(item.mask)]
        if item.foreground is not None:
            parts.append(_pixels_sha(item.foreground))
        if composite:
            parts.append(item.class_name)
        digest.update("\t".join(parts).encode() + b"\n")
    return digest.hexdigest()


def _images_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    seen: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        other = seen.get(path.stem.lower())
        if other is not None:
            # Their cut-outs would share one name (clipline run ignores case there too).
            raise InvalidEvalSet(f"{path}: shares its stem with {other.name}")
        seen[path.stem.lower()] = path
        found[path.stem] = path
    return found


def _read_set_json(path: Path, allow_train: bool) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvalSet(f"{path}: cannot be read as JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != SET_FORMAT:
        raise InvalidEvalSet(f"{path}: not a {SET_FORMAT} file")
    if data.get("split") == "train" and not allow_train:
        raise InvalidEvalSet(f"{path}: a training split; evaluating on training objects "
                             "flatters the model (--allow-train to do it anyway)")
    items = data.get("items")
    if not isinstance(items, list):
        raise InvalidEvalSet(f"{path}: 'items' must be a list")
    classes: dict[str, str] = {}
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("stem"), str)
                and isinstance(item.get("class"), str)):
            raise InvalidEvalSet(f"{path}: items[{i}] needs a 'stem' and a 'class' (strings)")
        if item["stem"] in classes:
            raise InvalidEvalSet(f"{path}: stem {item['stem']!r} appears twice")
        classes[item["stem"]] = item["class"]
    return {k: v for k, v in data.items() if k != "items"}, classes


def _item(root: Path, stem: str, class_name: str, image: Path, composite: bool) -> SetItem:
    mask = root / "masks" / f"{stem}.png"
    if not mask.is_file():
        raise InvalidEvalSet(f"{image}: no mask (expected {mask})")
    size, _ = _header(image)
    _check(mask, size, image, "mask")
    foreground: Path | None = None
    if composite:
        foreground = root / "foreground" / f"{stem}.png"
        if not foreground.is_file():
            raise InvalidEvalSet(f"{image}: no true foreground (expected {foreground})")
        _check(foreground, size, image, "foreground")
    return SetItem(stem, class_name, image, mask, foreground, size)


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and mode of an image, from its header; InvalidEvalSet if unreadable."""
    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InvalidEvalSet(f"{path}: cannot be read as an image ({exc})") from exc


def _check(path: Path, size: tuple[int, int], image: Path, what: str) -> None:
    found, mode = _header(path)
    if what == "mask" and mode not in ("L", "1"):
        raise InvalidEvalSet(f"{path}: mask mode {mode}, expected 8-bit grey (L) "
                             "or 1-bit (convert it, e.g. with Pillow's convert('L'))")
    if found != size:
        raise InvalidEvalSet(f"{path}: {what} is {found[0]}x{found[1]}, its image {image.name} "
                             f"is {size[0]}x{size[1]}")


def read_truth(item: SetItem) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The true alpha [H, W] and true foreground colours [H, W, 3] of ``item``, uint8.

    A real set has no true colours: the input image stands in for them (see
    ``pipeline.quality.metrics.recomposite_error``). A mask must be 8-bit grey (mode L) or
    1-bit; anything else (a palette, RGB, 16-bit) is refused rather than guessed at."""
    with Image.open(item.mask) as mask:
        if mask.mode not in ("L", "1"):
            raise InvalidEvalSet(f"{item.mask}: mask mode {mask.mode}, expected 8-bit grey (L)")
        alpha = np.asarray(mask.convert("L"), dtype=np.uint8)
    with Image.open(item.foreground or item.image) as colour:
        rgb = np.asarray(colour.convert("RGB"), dtype=np.uint8)
    return alpha, rgb


def _pixels_sha(path: Path) -> str:
    """sha256 of an image's mode, size and decoded pixels (not of its file's bytes)."""
    with Image.open(path) as im:
        im.load()
        digest = hashlib.sha256(f"{im.mode} {im.size[0]}x{im.size[1]}\n".encode())
        digest.update(im.tobytes())
    return digest.hexdigest()
