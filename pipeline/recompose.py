"""Recompose: a new output from a chosen set of a job's parts, from its stored mask, no model.

A job run with the option ``layers`` records every part of its mask in its result (``layers``:
id, role, bbox, ...; see ``pipeline.subject``) and stores the model-size mask it was made from
beside its output (``layers_mask``: an 8-bit grey PNG; ``pipeline.process``). From the source
image, that mask and the job's options, ``recompose`` makes the output again with any set of
parts shown:

* the parts and the pixels each one owns come from the stored mask alone, by the one rule of
  ``pipeline.parts`` (the one subject selection uses), so ids match the job's ``layers``;
* every pixel owned by a part not shown is cleared; the rest of the mask is kept as it is;
* then alpha, crop, edges, compose and encode run exactly as for the job
  (``pipeline.process.render``).

So recomposing with the job's own selection (every part but the ``dropped`` ones) gives the
job's output byte for byte, and hiding one part clears exactly the pixels it owns. Showing no
part gives an empty (transparent) output, even under ``strict_empty``: it was asked for.

``part_layers`` gives one full-size RGBA layer per part, named and flagged visible;
``layered_file`` writes them as a designer's PSD or OpenRaster file
(``pipeline.imaging.layered``): the main part on top, then the kept and the dropped ones in id
order (a part not shown is a hidden layer), and the untouched source as a hidden ``original``
at the bottom. Its memory is one [H, W, 4] array per layer, so it is refused
(``InvalidLayers``) when the layers would take more than ``LAYERED_MAX_BYTES``.

Errors: ``UnknownLayer`` for an id the mask does not have; ``JobNotSucceeded`` and
``LayersNotRecorded`` (``stored_layers``) for a job that has no layers to recompose; the
decoder's typed errors for the source, and ``CorruptImage`` / ``TooManyPixels`` for a stored
mask that is not one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import (
    CorruptImage,
    InvalidLayers,
    JobNotSucceeded,
    LayersNotRecorded,
    UnknownLayer,
)
from pipeline.imaging.compose import cut_out, multiply_alpha
from pipeline.imaging.decode import DEFAULT_LIMITS, DecodedImage, DecodeLimits, decode
from pipeline.imaging.layered import CONTENT_TYPE, Layer, LayeredFormat, encode_layered
from pipeline.jobs import Job, JobStatus
from pipeline.options import OutputOptions
from pipeline.parts import dequantise, hide_parts, label_parts
from pipeline.process import Cutout, Timings, render
from pipeline.subject import alpha_bbox, upscale_mask

MASK_LIMITS = DecodeLimits(max_pixels=4096 * 4096, max_bytes=64 * 1024 * 1024,
                           formats=frozenset({"PNG"}))
"""A stored mask is at model size (320x320 to 1024x1024): far below these."""
LAYERED_MAX_BYTES = 768 * 1024 * 1024
"""The most that a layered file's full-size RGBA layers may take in memory together (a 2048x2048
source: 48 layers)."""


@dataclass(frozen=True)
class StoredLayers:
    """What a succeeded job run with ``layers`` recorded."""

    mask: Any
    """Where its mask is: ``{"bucket", "key"}`` (services) or a name under DST (embedded)."""
    parts: tuple[Mapping[str, Any], ...]
    """Its ``layers`` metadata, in id order."""
    options: OutputOptions

    @property
    def job_selection(self) -> frozenset[int]:
        """The ids the job's own output shows: every part its selection did not drop."""
        return frozenset(int(p["id"]) for p in self.parts if p.get("role") != "dropped")

    def described(self, shown: Collection[int]) -> list[dict[str, Any]]:
        """The ``layers`` metadata with ``shown`` (bool) added to each part."""
        return [{**p, "shown": int(p["id"]) in shown} for p in self.parts]


def stored_layers(job: Job) -> StoredLayers:
    """The job's layers; ``JobNotSucceeded`` unless it succeeded, ``LayersNotRecorded`` unless
    it ran with ``layers=true``."""
    if job.status is not JobStatus.SUCCEEDED:
        raise JobNotSucceeded(job.id, f"it is {job.status.value}: only a succeeded job can be "
                              "recomposed")
    result = job.result or {}
    if not result.get("layers_mask") or not isinstance(result.get("layers"), list):
        raise LayersNotRecorded(job.id, "it was not run with the option layers=true; submit "
                                "it again with it")
    return StoredLayers(result["layers_mask"], tuple(result["layers"]),
                        OutputOptions.parse(job.options))


def selection_digest(shown: Collection[int]) -> str:
    """12 hex digits of sha256 over the sorted ids, comma-separated: one per set."""
    return hashlib.sha256(",".join(map(str, sorted(shown))).encode()).hexdigest()[:12]


def selection_key(output: str, shown: Collection[int], *, extension: str | None = None) -> str:
    """The output key (or name) of a recomposition: the job's own ``output`` with
    ``.layers-<selection_digest>`` before its extension (or before ``extension``, e.g.
    ``".psd"``, which then replaces it). The same set always gives the same key, so asking
    again overwrites the same object."""
    digest = selection_digest(shown)
    stem, ext = _split_extension(output)
    if extension is not None:
        ext = extension.lstrip(".")
    return f"{stem}.layers-{digest}.{ext}" if ext else f"{stem}.layers-{digest}"


def is_selection_key(output: str, candidate: str) -> bool:
    """Whether ``candidate`` is a name ``selection_key(output, ...)`` gives for some set of
    parts and some extension: an earlier recomposition of ``output``."""
    stem, _ = _split_extension(output)
    return re.fullmatch(re.escape(stem) + r"\.layers-[0-9a-f]{12}\.[a-z]+", candidate) is not None


def _split_extension(output: str) -> tuple[str, str]:
    stem, dot, ext = output.rpartition(".")
    return (stem, ext) if dot else (output, "")


def read_mask(data: bytes) -> npt.NDArray[np.uint8]:
    """A stored layers mask -> [h, w] uint8. It must be a grey 8-bit PNG within
    ``MASK_LIMITS``: else ``CorruptImage`` (or ``TooManyPixels``, ``ObjectTooLarge``)."""
    decoded = decode(data, MASK_LIMITS)
    if decoded.info.mode != "L":
        raise CorruptImage(f"a layers mask is an 8-bit grey PNG, not mode {decoded.info.mode}")
    return np.ascontiguousarray(decoded.rgba[..., 0])


def recompose(
    source: bytes, mask: bytes, options: OutputOptions, shown: Collection[int], *,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Cutout:
    """The output of ``source`` under ``options`` showing only the parts ``shown`` (ids) of the
    stored ``mask``. ``UnknownLayer`` names the ids the mask does not have. The metadata holds
    ``bbox``, ``foreground_fraction``, ``empty``, ``output_size``, ``crop_box``, ``shown``,
    ``bytes`` and ``content_type``."""
    decoded = decode(source, limits)
    small = dequantise(read_mask(mask))
    found = label_parts(small)
    unknown = sorted(set(shown) - set(range(found.count)))
    if unknown:
        raise UnknownLayer(f"no part {', '.join(map(str, unknown[:10]))}: the mask has "
                           f"{found.count} parts (ids 0 to {found.count - 1})"
                           if found.count else "no part: the mask has none")
    hidden = [label for label in range(1, found.count + 1) if label - 1 not in shown]
    alpha = upscale_mask(hide_parts(small, found, hidden), decoded.size)
    bbox = alpha_bbox(alpha)
    composite, data = render(decoded, alpha, bbox, options, Timings())
    metadata = {
        "bbox": None if bbox is None else list(bbox),
        "foreground_fraction": round(float(alpha.mean()) / 255.0, 6),
        "empty": bbox is None,
        **composite.to_metadata(),
        "shown": sorted(shown),
        "bytes": len(data),
        "content_type": options.content_type,
    }
    return Cutout(data, options.content_type, options.extension, metadata)


@dataclass(frozen=True, eq=False)
class PartLayer:
    """One part as a layer of a designer file (the fields of ``imaging.layered.Layer``)."""

    name: str
    """``main``, ``kept-<id>`` or ``dropped-<id>-<reason>``."""
    rgba: npt.NDArray[np.uint8] = field(repr=False)
    """[H, W, 4] uint8 at the source's size: the source's colour, the part's alpha."""
    visible: bool


def layer_name(part: Mapping[str, Any]) -> str:
    """``main``; ``kept-2``; ``dropped-3-small``."""
    role, ident = part.get("role"), int(part["id"])
    if role == "main":
        return "main"
    if role == "dropped":
        return f"dropped-{ident}-{part.get('reason') or 'unknown'}"
    return f"kept-{ident}"


def part_layers(
    source: bytes, mask: bytes, parts: Sequence[Mapping[str, Any]], *,
    shown: Collection[int] | None = None, limits: DecodeLimits = DEFAULT_LIMITS,
) -> list[PartLayer]:
    """One layer per part of ``mask``, in id order: each is the source, uncropped and
    unflattened, under the alpha of the pixels that part owns (the source's own alpha
    multiplied in). ``parts`` is the job's ``layers`` metadata (names and roles); ``shown``
    the visible ids (default: the job's own selection). Memory: one [H, W, 4] array per part;
    the caller bounds the number of parts."""
    return _part_layers(decode(source, limits), mask, parts, shown)


def _part_layers(
    decoded: DecodedImage, mask: bytes, parts: Sequence[Mapping[str, Any]],
    shown: Collection[int] | None,
) -> list[PartLayer]:
    small = dequantise(read_mask(mask))
    found = label_parts(small)
    by_id = {int(p["id"]): p for p in parts}
    if set(by_id) != set(range(found.count)):
        raise CorruptImage(f"the stored mask has {found.count} parts, the job's layers "
                           f"list {len(by_id)}")
    visible = (frozenset(i for i, p in by_id.items() if p.get("role") != "dropped")
               if shown is None else frozenset(shown))
    owners = found.owners()
    layers = []
    for ident in range(found.count):
        alpha = upscale_mask(np.where(owners == ident + 1, small, 0.0), decoded.size)
        rgba = cut_out(decoded.rgba, multiply_alpha(alpha, decoded.rgba[..., 3]))
        layers.append(PartLayer(layer_name(by_id[ident]), rgba, ident in visible))
    return layers


def layered_file(
    fmt: LayeredFormat, source: bytes, mask: bytes, parts: Sequence[Mapping[str, Any]], *,
    shown: Collection[int] | None = None, limits: DecodeLimits = DEFAULT_LIMITS,
) -> Cutout:
    """A designer's ``fmt`` file (``psd`` or ``ora``) of the job's parts: ``main`` on top, then
    the others in id order, each hidden unless in ``shown`` (default: the job's own selection),
    and the source as a hidden ``original`` layer at the bottom. ``UnknownLayer`` for an id the
    mask does not have; ``InvalidLayers`` when the layers would take over ``LAYERED_MAX_BYTES``.
    The metadata holds ``shown``, ``layers`` (the names, top first), ``bytes`` and
    ``content_type``."""
    decoded = decode(source, limits)
    width, height = decoded.size
    count = len(parts) + 1
    if count * width * height * 4 > LAYERED_MAX_BYTES:
        raise InvalidLayers(
            f"{len(parts)} parts at {width}x{height} would take "
            f"{count * width * height * 4 // 2**20} MiB as layers, over the "
            f"{LAYERED_MAX_BYTES // 2**20} MiB a layered file may use: recompose to a cut-out "
            "instead")
    wanted = set(range(len(parts))) if shown is None else set(shown)
    unknown = sorted(wanted - {int(p["id"]) for p in parts})
    if unknown:
        raise UnknownLayer(f"no part {', '.join(map(str, unknown[:10]))}: the job has "
                           f"{len(parts)} parts")
    found = _part_layers(decoded, mask, parts, shown)
    ordered = sorted(found, key=lambda layer: layer.name != "main")
    layers = [Layer(p.name, p.rgba, p.visible) for p in ordered]
    layers.append(Layer("original", decoded.rgba, visible=False))
    data = encode_layered(fmt, layers)
    return Cutout(data, CONTENT_TYPE[fmt], f".{fmt}", {
        "shown": sorted(p_id for p_id, layer in enumerate(found) if layer.visible),
        "layers": [layer.name for layer in layers],
        "bytes": len(data),
        "content_type": CONTENT_TYPE[fmt],
    })
