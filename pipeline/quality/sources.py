"""Folders of cut-out objects and background photos for composite sets, split by file.

A *source* is a folder searched recursively (symbolic links followed, names sorted) for
``.png``, ``.jpg``, ``.jpeg`` and ``.webp`` files. Each file belongs to the ``train`` or the
``eval`` side by a stable hash of its path relative to the folder (:func:`side_of`), never by
a seed: a set built for one side never holds a file of the other, whatever the seed.

Files are decoded lazily, through the product's own safe decoder
(:func:`pipeline.imaging.decode.decode`: pixel and byte limits, ICC to sRGB, orientation), only
when a :class:`Pool` draws them. A file that cannot serve is skipped with a reason, recorded
(:class:`Skipped`) and never drawn again:

* objects: unreadable or refused by the decoder (``too_many_pixels`` for a decompression bomb,
  ``corrupt_image``, ...), ``no_alpha`` (no alpha channel), ``opaque`` (alpha 255 everywhere),
  ``too_small`` (the visible part's longest side under ``min_side`` pixels), ``too_sparse`` (the
  visible part covers under 8% of its own box: sparks, outlines), ``translucent`` (most visible
  pixels partly transparent: smoke, glass);
* backgrounds: unreadable or refused by the decoder, ``too_small``.

Errors: a folder that is missing, not a folder, or holds no image file raises
:class:`InvalidSources` (a :class:`pipeline.errors.UsageError`); so does a pool whose every
file was skipped.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

from pipeline.errors import ClipError, UsageError
from pipeline.imaging.decode import DecodeLimits, decode

Side = Literal["train", "eval"]
SIDES: tuple[Side, ...] = ("train", "eval")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
SOURCE_LIMITS = DecodeLimits(max_pixels=40_000_000, max_bytes=64 * 1024 * 1024)

RGBA = npt.NDArray[np.uint8]
T = TypeVar("T")


class InvalidSources(UsageError):
    """A source folder that cannot feed a set: missing, empty, or nothing in it usable."""

    reason = "invalid_sources"


class Unusable(Exception):
    """One file that cannot serve as an object or a background; ``str(exc)`` is the reason."""


def side_of(rel: str, eval_share: float) -> Side:
    """``"eval"`` for a share ``eval_share`` (0..1) of relative paths, ``"train"`` for the rest.

    The first 64 bits of the sha256 of the POSIX relative path, as a fraction of 2**64, below
    ``eval_share`` mean eval. Stable across machines, seeds and the other files present.
    """
    if not 0.0 <= eval_share <= 1.0:
        raise ValueError("eval_share must be within 0..1")
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") / 2.0**64
    return "eval" if h < eval_share else "train"


@dataclass(frozen=True)
class SourceFile:
    """One image file of a source folder: ``rel`` is its POSIX path relative to ``root``."""

    root: Path
    rel: str
    side: Side

    @property
    def path(self) -> Path:
        return self.root / self.rel


@dataclass(frozen=True)
class Skipped:
    """A file a pool could not use: ``source`` is e.g. ``"objects:photo"``."""

    source: str
    rel: str
    reason: str


def scan(folder: Path, eval_share: float) -> list[SourceFile]:
    """Every image file under ``folder`` (recursively, sorted by relative path), with its side.

    Raises :class:`InvalidSources` when ``folder`` is missing, not a folder, or holds no file
    with an image suffix.
    """
    if not folder.exists():
        raise InvalidSources(f"source folder {folder} does not exist")
    if not folder.is_dir():
        raise InvalidSources(f"source {folder} is not a folder")
    rels: list[str] = []
    for here, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        base = Path(here).relative_to(folder)
        rels.extend((base / n).as_posix() for n in names
                    if Path(n).suffix.lower() in IMAGE_SUFFIXES)
    if not rels:
        raise InvalidSources(f"source folder {folder} holds no .png, .jpg or .webp file")
    return [SourceFile(folder, rel, side_of(rel, eval_share)) for rel in sorted(rels)]


def _read(file: SourceFile, draft_to: tuple[int, int] | None = None) -> tuple[RGBA, bool]:
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        raise Unusable(f"unreadable: {exc.strerror or exc}") from exc
    try:
        decoded = decode(data, SOURCE_LIMITS, draft_to=draft_to)
    except ClipError as exc:
        raise Unusable(f"{exc.reason}: {exc}") from exc
    return np.asarray(decoded.rgba), decoded.has_alpha


def _fit_rgba(rgba: RGBA, max_side: int) -> RGBA:
    """Downscale (never up) so the longest side is at most ``max_side``; Pillow resizes RGBA
    with premultiplied alpha, so no dark fringe comes in from transparent pixels."""
    h, w = rgba.shape[:2]
    if max(h, w) <= max_side:
        return rgba
    k = max_side / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    return np.asarray(Image.fromarray(rgba, "RGBA").resize(size, Image.Resampling.LANCZOS))


def load_cutout(file: SourceFile, *, min_side: int, max_side: int) -> RGBA:
    """The object of ``file`` as RGBA uint8 [h, w, 4], cropped to its visible part (alpha > 0),
    straight (not premultiplied) colours, longest side at most ``max_side`` pixels.

    Raises :class:`Unusable` with the reason (see the module docstring).
    """
    rgba, has_alpha = _read(file)
    alpha = rgba[..., 3]
    if not has_alpha:
        raise Unusable("no_alpha: the file has no alpha channel")
    if bool((alpha == 255).all()):
        raise Unusable("opaque: alpha is 255 everywhere")
    ys, xs = np.nonzero(alpha)
    if ys.size == 0:
        raise Unusable("too_small: alpha is 0 everywhere")
    crop = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if max(crop.shape[:2]) < min_side:
        raise Unusable(f"too_small: visible part {crop.shape[1]}x{crop.shape[0]} < {min_side}")
    visible = crop[..., 3] > 0
    if visible.mean() < 0.08:
        raise Unusable("too_sparse: the visible part covers under 8% of its box")
    if (crop[..., 3][visible] < 250).mean() > 0.5:
        raise Unusable("translucent: most visible pixels are partly transparent")
    return _fit_rgba(np.ascontiguousarray(crop), max_side)


def load_background(file: SourceFile, *, min_side: int) -> npt.NDArray[np.uint8]:
    """The photo of ``file`` as RGB uint8 [H, W, 3] (alpha dropped), its shorter side at most
    ``2 * min_side`` (downscaled, JPEGs decoded at a reduced size where possible).

    Raises :class:`Unusable` when unreadable, refused by the decoder, or when its shorter side
    is under ``min_side // 2`` pixels.
    """
    rgba, _ = _read(file, draft_to=(2 * min_side, 2 * min_side))
    h, w = rgba.shape[:2]
    if min(h, w) < min_side // 2:
        raise Unusable(f"too_small: {w}x{h}, the shorter side under {min_side // 2}")
    if min(h, w) > 2 * min_side:
        k = 2 * min_side / min(h, w)
        rgba = np.asarray(Image.fromarray(rgba, "RGBA").resize(
            (max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(rgba[..., :3])


@dataclass(eq=False)
class Pool(Generic[T]):
    """The files of one source on one side, drawn in an order the first draw's generator
    shuffles, loaded at first use (and kept), skipped ones recorded and never drawn again.

    ``name`` (e.g. ``"objects:photo"``) and ``folder`` say where the files came from.
    """

    name: str
    folder: Path
    files: list[SourceFile]
    loader: Callable[[SourceFile], T]
    used: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    _order: list[int] | None = None
    _next: int = 0
    _cache: dict[int, T] = field(default_factory=dict)

    def draw(self, rng: np.random.Generator) -> tuple[SourceFile, T]:
        """The next usable file and its pixels; cycles once every file was drawn.

        Raises :class:`InvalidSources` when no file of the pool is usable.
        """
        if self._order is None:
            self._order = [int(i) for i in rng.permutation(len(self.files))]
        while self._order:
            slot = self._next % len(self._order)
            index = self._order[slot]
            if index not in self._cache:
                try:
                    self._cache[index] = self.loader(self.files[index])
                except Unusable as exc:
                    self.skipped.append(Skipped(self.name, self.files[index].rel, str(exc)))
                    del self._order[slot]
                    continue
            self._next = slot + 1
            rel = self.files[index].rel
            if rel not in self.used:
                self.used.append(rel)
            return self.files[index], self._cache[index]
        raise InvalidSources(f"no usable file for {self.name} in {self.folder}: "
                             f"{len(self.files)} tried ({self.summary()})")

    def summary(self) -> str:
        """The skip reasons with their counts, e.g. ``"opaque 3, too_small 1"``."""
        counts = Counter(s.reason.split(":")[0] for s in self.skipped)
        return ", ".join(f"{r} {n}" for r, n in sorted(counts.items())) or "none skipped"


def pool_for(name: str, folder: Path, side: Side, eval_share: float,
             loader: Callable[[SourceFile], T]) -> Pool[T]:
    """A pool of the files of ``folder`` on ``side``; raises :class:`InvalidSources` when the
    folder is unusable or none of its files falls on that side."""
    files = [f for f in scan(folder, eval_share) if f.side == side]
    if not files:
        raise InvalidSources(f"{name} {folder}: no file falls on the {side} side with "
                             f"--eval-share {eval_share}")
    return Pool(name, folder, files, loader)
