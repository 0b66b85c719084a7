"""One image end to end: bytes in, a cut-out and its metadata out. Pure apart from the ports.

The work is split in three stages so a caller can overlap them (decode and encode on threads,
inference batched in between)::

    prepare(data)            decode once, safely; the model's input is resized from that decode
    segmenter.predict(...)   a batch of model inputs → masks
    finish(prepared, mask)   choose the subject, refine and clean the edges (edges=refine/clean),
                             compose, encode, describe

``cut_out`` chains the three for one image; ``process_job`` adds choosing the job's model among
the served ones and fetching from and writing to an ``ObjectStore``, which is what a worker runs
for a job.

With the option ``layers`` the model's mask is quantised to 8 bits before anything else and the
whole output is made from that quantised mask, which ``finish`` returns too (a grey PNG at model
size, ``Cutout.layers_mask``); ``process_job`` stores it beside the output
(``layers_mask_key``), so ``pipeline.recompose`` can remake the output with parts switched on
or off, byte for byte what ``finish`` gives for the same parts, without the model.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.imaging.compose import Composite, compose, multiply_alpha
from pipeline.imaging.decode import DEFAULT_LIMITS, DecodedImage, DecodeLimits, decode, model_input
from pipeline.imaging.edges import decontaminate
from pipeline.imaging.encode import encode, encode_pixels
from pipeline.imaging.refine import refine_alpha
from pipeline.jobs import Job, canonical_json
from pipeline.options import OutputOptions
from pipeline.parts import dequantise, quantise
from pipeline.ports import ObjectStore, Segmenter, Segmenters
from pipeline.subject import Bbox, alpha_bbox, check_mask, find_subject

STAGES = ("fetch", "decode", "infer", "edges", "compose", "encode", "put")


@dataclass
class Timings:
    """Seconds spent per stage; ``ms()`` for metadata."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def ms(self) -> dict[str, float]:
        return {k: round(v * 1000, 2) for k, v in self.seconds.items()}


@dataclass(frozen=True, eq=False)
class Prepared:
    decoded: DecodedImage
    model_input: npt.NDArray[np.uint8]
    timings: Timings


@dataclass(frozen=True, eq=False)
class Cutout:
    data: bytes
    content_type: str
    extension: str
    metadata: Mapping[str, Any]
    layers_mask: bytes | None = field(default=None, repr=False)
    """With the option ``layers``: the model-size mask the output was made from, as an 8-bit
    grey PNG (``pipeline.recompose.read_mask`` reads it back); else None."""


def prepare(
    data: bytes, size: tuple[int, int], limits: DecodeLimits = DEFAULT_LIMITS,
    timings: Timings | None = None,
) -> Prepared:
    """Decode ``data`` once and make the model's input (``size`` is (h, w)) from it."""
    timings = timings or Timings()
    with timings.stage("decode"):
        decoded = decode(data, limits)
        pixels = model_input(decoded, size)
    return Prepared(decoded, pixels, timings)


def finish(
    prepared: Prepared, mask: npt.NDArray[np.float32], options: OutputOptions, *, model: str
) -> Cutout:
    """Subject selection, composition and encoding; ``mask`` is the model's [h, w] output.

    Raises ``ModelError`` for a mask that is not [h, w] finite floats, ``EmptyMask`` (only
    with ``strict_empty``) and ``InvalidOptions`` for an output the format cannot hold."""
    decoded, timings = prepared.decoded, prepared.timings
    small = None
    with timings.stage("compose"):
        if options.layers:
            # The output is made from the mask as stored, so recomposing it is exact.
            small = quantise(check_mask(mask))
            mask = dequantise(small)
        subject = find_subject(
            mask, decoded.size, policy=options.subject, strict_empty=options.strict_empty,
            image=prepared.model_input, layers=options.layers,
        )
    composite, data = render(decoded, subject.alpha, subject.bbox, options, timings)
    stored = None
    if small is not None:
        with timings.stage("encode"):
            stored = encode_pixels(small, "png")
    info = decoded.info
    metadata = {
        **subject.to_metadata(),
        **composite.to_metadata(),
        "source": {
            "format": info.format, "mode": info.mode, "size": list(decoded.size),
            "had_alpha": decoded.has_alpha, "colour": decoded.colour,
            "orientation": info.orientation,
        },
        "model": model,
        "options": options.normalised(),
        "bytes": len(data),
        "content_type": options.content_type,
    }
    if info.warnings:
        # Damage the decoder tolerated (unreadable EXIF, an ignored PNG chunk): one sentence each.
        metadata["decode_warnings"] = list(info.warnings)
    return Cutout(data, options.content_type, options.extension, metadata, stored)


def render(
    decoded: DecodedImage, alpha: npt.NDArray[np.uint8], bbox: Bbox | None,
    options: OutputOptions, timings: Timings,
) -> tuple[Composite, bytes]:
    """Refine and clean the edges (``edges=refine``/``clean``), compose and encode: the output
    of ``decoded`` under ``alpha`` ([H, W] uint8 at the image's size) and its ``bbox`` (for the
    crop; with ``refine``, that of the refined alpha)."""
    rgba = decoded.rgba
    if options.edges == "refine" and bbox is not None:
        with timings.stage("edges"):
            alpha = refine_alpha(rgba[..., :3], alpha)
            bbox = alpha_bbox(alpha)
    if options.edges != "keep" and options.channels == "rgba":
        with timings.stage("edges"):
            # The output's alpha (the mask's times the source's own), at the image's size.
            rgba = decontaminate(rgba, multiply_alpha(alpha, rgba[..., 3]))
    with timings.stage("compose"):
        composite = compose(rgba, alpha, options, bbox=bbox)
    with timings.stage("encode"):
        data = encode(composite, options.format)
    return composite, data


def cut_out(
    data: bytes, options: OutputOptions, segmenter: Segmenter, *, model: str,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Cutout:
    """One image, all stages; the result's metadata carries the time of each stage."""
    prepared = prepare(data, segmenter.input_size, limits)
    cut = _segment_and_finish(prepared, segmenter, options, model)
    return Cutout(cut.data, cut.content_type, cut.extension,
                  {**cut.metadata, "timings_ms": prepared.timings.ms()}, cut.layers_mask)


def _segment_and_finish(
    prepared: Prepared, segmenter: Segmenter, options: OutputOptions, model: str
) -> Cutout:
    with prepared.timings.stage("infer"):
        mask = segmenter.predict(prepared.model_input[np.newaxis])[0]
    return finish(prepared, mask, options, model=model)


def options_hash(options: OutputOptions, model: str) -> str:
    """A short, stable digest of what shapes an output (recorded as provenance)."""
    return hashlib.sha256(canonical_json([options.normalised(), model]).encode()).hexdigest()[:16]


def output_key(job: Job, options: OutputOptions, prefix: str = "cutouts") -> str:
    """Deterministic: the same job always writes the same key, so a retry overwrites."""
    return f"{prefix}/{job.tenant_id}/{job.id}{options.extension}"


def layers_mask_key(output: str) -> str:
    """Where the layers mask of the output at key ``output`` goes: beside it, its extension
    replaced by ``.mask.png`` (``cutouts/t/ID.png`` -> ``cutouts/t/ID.mask.png``)."""
    stem, dot, _ = output.rpartition(".")
    return f"{stem if dot else output}.mask.png"


def process_job(
    job: Job, store: ObjectStore, segmenters: Segmenters, *, output_bucket: str,
    limits: DecodeLimits = DEFAULT_LIMITS, prefix: str = "cutouts",
) -> dict[str, Any]:
    """Fetch the job's source, cut it out with the job's model (``job.model``, one of
    ``segmenters``), write the result; returns the job's result record.

    The output goes to the job's own destination when it has one (``job.output_bucket``,
    ``job.output_key``), else to ``output_bucket`` at ``output_key(job, options, prefix)``.

    Raises ``ModelNotServed`` (before anything is fetched) when ``segmenters`` does not serve
    the job's model, then the typed errors of each stage (``ObjectMissing``, ``CorruptImage``,
    ``InferenceUnavailable``, ...).
    """
    options = OutputOptions.parse(job.options)
    segmenter = segmenters.get(job.model)
    timings = Timings()
    with timings.stage("fetch"):
        data = store.get(job.bucket, job.key, version=job.version)
    prepared = prepare(data, segmenter.input_size, limits, timings)
    cut = _segment_and_finish(prepared, segmenter, options, job.model)
    # A destination named at submit (pipeline.output_keys) was resolved then: the same key on
    # every attempt, like the default one.
    key = job.output_key or output_key(job, options, prefix)
    output_bucket = job.output_bucket or output_bucket
    provenance = {"job-id": str(job.id), "model": job.model,
                  "options-hash": options_hash(options, job.model)}
    stored: dict[str, Any] = {}
    with timings.stage("put"):
        if cut.layers_mask is not None:
            # Before the output: an output written is never without its mask.
            mask_key = layers_mask_key(key)
            store.put(output_bucket, mask_key, cut.layers_mask, content_type="image/png",
                      metadata=provenance)
            stored["layers_mask"] = {"bucket": output_bucket, "key": mask_key}
        store.put(output_bucket, key, cut.data, content_type=cut.content_type,
                  metadata=provenance)
    return {**cut.metadata, "output": {"bucket": output_bucket, "key": key}, **stored,
            "timings_ms": timings.ms()}
