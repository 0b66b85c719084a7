"""Layers: parts recorded by a job with ``layers``, and recomposed from the stored mask alone.

The picture: three numpy-drawn discs on white (a large red one, a medium blue one, a small
green one far from both), cut out by the fake segmenter (the mask is each pixel's colour
distance from the background), so the mask has exactly three parts and ``subject=main`` drops
the small one.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from pipeline import errors
from pipeline.adapters.segmenters.fake import FakeSegmenter, FakeSegmenters
from pipeline.adapters.storage.memory import MemoryStore
from pipeline.imaging.encode import encode_pixels
from pipeline.jobs import Job, JobStatus
from pipeline.options import OutputOptions
from pipeline.parts import dequantise, hide_parts, label_parts, quantise
from pipeline.process import cut_out, layers_mask_key, output_key, process_job
from pipeline.recompose import (
    layer_name,
    part_layers,
    read_mask,
    recompose,
    selection_key,
    stored_layers,
)

SIZE = (400, 300)
DISCS = (  # (cx, cy, r, colour): large, medium, small
    (130, 150, 80, (150, 0, 0)),  # the most contrast: the sharpest, so main's choice
    (320, 200, 45, (20, 40, 220)),
    (330, 50, 12, (20, 180, 40)),
)


def discs() -> bytes:
    """The three discs on white, as PNG."""
    yy, xx = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    pixels = np.full((SIZE[1], SIZE[0], 3), 255, np.uint8)
    for cx, cy, r, colour in DISCS:
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
    return encode_pixels(pixels, "png")


def pixels(data: bytes) -> npt.NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(data)))


def layered(options: dict[str, Any]) -> tuple[Any, OutputOptions]:
    """The job's cut-out with ``layers`` on."""
    parsed = OutputOptions.parse({**options, "layers": True})
    return cut_out(discs(), parsed, FakeSegmenter(), model="fake"), parsed


def part_at(parts: list[dict[str, Any]], x: int, y: int) -> dict[str, Any]:
    """The part whose bbox holds the source pixel (x, y)."""
    return next(p for p in parts if p["bbox"][0] <= x < p["bbox"][0] + p["bbox"][2]
                and p["bbox"][1] <= y < p["bbox"][1] + p["bbox"][3])


def test_layers_list_every_part_with_its_role_under_main() -> None:
    cut, _ = layered({"subject": "main"})
    parts = cut.metadata["layers"]
    assert [p["id"] for p in parts] == [0, 1, 2]
    large, medium, small = (part_at(parts, cx, cy) for cx, cy, _, _ in DISCS)
    assert (large["role"], medium["role"], small["role"]) == ("main", "kept", "dropped")
    assert small["reason"] == "small" and small["portability"] is None
    assert large["portability"] == 1.0 and 0 < medium["portability"] < 1
    assert large["reason"] is None and medium["reason"] is None
    assert set(large) == {"id", "role", "bbox", "area_fraction", "relative_focus", "confidence",
                          "reason", "portability"}
    # The subject's own record is unchanged by layers: one dropped, two kept.
    assert len(cut.metadata["dropped"]) == 1 and len(cut.metadata["kept"]) == 2


def test_layers_under_all_drop_nothing_the_largest_is_main() -> None:
    cut, _ = layered({})
    roles = sorted(p["role"] for p in cut.metadata["layers"])
    assert roles == ["kept", "kept", "main"]
    assert cut.metadata["dropped"] == [] and "kept" not in cut.metadata


def test_without_layers_there_is_no_mask_and_no_layers_key() -> None:
    cut = cut_out(discs(), OutputOptions(), FakeSegmenter(), model="fake")
    assert cut.layers_mask is None and "layers" not in cut.metadata


def test_the_stored_mask_is_the_model_size_grey_png() -> None:
    cut, _ = layered({})
    small = read_mask(cut.layers_mask)
    assert small.shape == (320, 320) and small.dtype == np.uint8
    assert label_parts(dequantise(small)).count == 3


@pytest.mark.parametrize("options", [
    {},
    {"subject": "main"},
    {"subject": "main", "crop": True, "crop_margin": "5%", "format": "webp"},
    {"subject": "main", "format": "jpg", "max_side": 150},
    # pymatting compiles with numba on first use (minutes on 2 CPUs, cached afterwards).
    pytest.param({"subject": "main", "edges": "clean"}, marks=pytest.mark.timeout(600)),
    pytest.param({"crop": True, "edges": "refine"}, marks=pytest.mark.timeout(600)),
    {"subject": "main", "channels": "alpha", "crop": True},
    {"bg_color": "navy", "crop": True, "crop_margin": "7px"},
], ids=["all", "main", "crop-webp", "jpg-max-side", "edges-clean", "edges-refine-crop",
        "alpha-crop", "bg-crop"])
def test_recompose_with_the_jobs_own_selection_is_the_output_byte_for_byte(
        options: dict[str, Any]) -> None:
    cut, parsed = layered(options)
    record = _succeeded({**options, "layers": True}, cut.metadata, "m.png")
    shown = stored_layers(record).job_selection
    again = recompose(discs(), cut.layers_mask, parsed, shown)
    assert again.data == cut.data
    assert again.metadata["bbox"] == cut.metadata["bbox"]


def test_layers_do_not_change_the_output_of_an_ordinary_mask() -> None:
    # The fake's mask is not 8-bit; quantised, this picture's output is still the same.
    plain = cut_out(discs(), OutputOptions(subject="main"), FakeSegmenter(), model="fake")
    cut, _ = layered({"subject": "main"})
    assert pixels(plain.data).shape == pixels(cut.data).shape
    assert np.abs(pixels(plain.data).astype(int) - pixels(cut.data)).max() <= 1


def test_switching_one_part_off_clears_exactly_its_pixels() -> None:
    cut, parsed = layered({})
    parts = cut.metadata["layers"]
    medium = part_at(parts, DISCS[1][0], DISCS[1][1])
    shown = {p["id"] for p in parts} - {medium["id"]}
    before, after = pixels(cut.data), pixels(recompose(discs(), cut.layers_mask, parsed,
                                                       shown).data)
    # Its pixels: the ones it owns, soft edge included (its own layer's alpha).
    owned = part_layers(discs(), cut.layers_mask, parts)[medium["id"]].rgba[..., 3] > 0
    x, y, w, h = medium["bbox"]
    assert owned[y:y + h, x:x + w].mean() > 0.7 and owned.sum() > np.pi * 45 * 45
    assert (before[owned][:, 3] > 0).all()
    assert (after[owned] == 0).all()  # cleared, colour and all
    assert np.array_equal(after[~owned], before[~owned])  # every other pixel: the same


def test_switching_a_dropped_part_on_brings_it_back() -> None:
    cut, parsed = layered({"subject": "main"})
    parts = cut.metadata["layers"]
    small = part_at(parts, DISCS[2][0], DISCS[2][1])
    cx, cy = DISCS[2][0], DISCS[2][1]
    assert pixels(cut.data)[cy, cx, 3] == 0
    every = recompose(discs(), cut.layers_mask, parsed, {p["id"] for p in parts})
    assert pixels(every.data)[cy, cx, 3] == 255 and small["role"] == "dropped"
    # Every part shown is what subject=all gives for the same stored mask.
    everything, _ = layered({})
    assert every.data == everything.data


def test_hiding_every_part_gives_an_empty_output() -> None:
    cut, parsed = layered({"subject": "main", "strict_empty": True})
    empty = recompose(discs(), cut.layers_mask, parsed, set())
    assert empty.metadata["empty"] is True and empty.metadata["bbox"] is None
    assert (pixels(empty.data)[..., 3] == 0).all()


@pytest.mark.parametrize("shown", [{3}, {-1}, {0, 99}])
def test_an_unknown_part_id_is_refused_naming_it(shown: set[int]) -> None:
    cut, parsed = layered({})
    with pytest.raises(errors.UnknownLayer) as info:
        recompose(discs(), cut.layers_mask, parsed, shown)
    assert "ids 0 to 2" in info.value.message
    assert isinstance(info.value, errors.PermanentError)


@pytest.mark.parametrize("bad", [b"not a png", encode_pixels(np.zeros((8, 8, 3), np.uint8),
                                                              "png")], ids=["bytes", "rgb"])
def test_a_stored_mask_that_is_not_one_is_corrupt(bad: bytes) -> None:
    with pytest.raises((errors.CorruptImage, errors.NotAnImage)):
        read_mask(bad)


def test_hide_parts_is_the_rule_subject_selection_uses() -> None:
    cut, _ = layered({"subject": "main"})
    small = dequantise(read_mask(cut.layers_mask))
    found = label_parts(small)
    dropped = [p["id"] + 1 for p in cut.metadata["layers"] if p["role"] == "dropped"]
    cleaned = hide_parts(small, found, dropped)
    assert np.count_nonzero(quantise(cleaned)) < np.count_nonzero(quantise(small))
    assert hide_parts(small, found, []) is small


def test_part_layers_give_one_named_layer_per_part() -> None:
    cut, _ = layered({"subject": "main"})
    parts = cut.metadata["layers"]
    layers = part_layers(discs(), cut.layers_mask, parts)
    assert [layer.name for layer in layers] == [layer_name(p) for p in parts]
    names = {layer_name(p): p for p in parts}
    assert "main" in names and any(n.startswith("kept-") for n in names)
    assert f"dropped-{part_at(parts, DISCS[2][0], DISCS[2][1])['id']}-small" in names
    for layer, part in zip(layers, parts, strict=True):
        assert layer.rgba.shape == (SIZE[1], SIZE[0], 4)
        assert layer.visible is (part["role"] != "dropped")
    # The layers' alphas never overlap: each pixel is owned by one part.
    assert ((np.stack([layer.rgba[..., 3] for layer in layers]) > 0).sum(axis=0) <= 1).all()


def _succeeded(options: dict[str, Any], result: Any, output: str) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=uuid.uuid4(), tenant_id="acme", batch_id=None, bucket="in", key="discs.png",
        version=None, options=options, model="fake", idempotency_key="k", priority=0,
        status=JobStatus.SUCCEEDED, attempts=1, max_attempts=3, not_before=now,
        lease_token=None, lease_expires_at=None, leased_by=None, last_error_code=None,
        last_error_message=None, result={**result, "output": output, "layers_mask": "m"},
        created_at=now, updated_at=now, finished_at=now,
    )


def test_stored_layers_refuses_a_job_not_succeeded_or_without_layers() -> None:
    job = _succeeded({"layers": True}, {"layers": []}, "a.png")
    assert stored_layers(job).job_selection == frozenset()
    with pytest.raises(errors.JobNotSucceeded):
        stored_layers(replace(job, status=JobStatus.RUNNING))
    without = {k: v for k, v in (job.result or {}).items() if k != "layers_mask"}
    with pytest.raises(errors.LayersNotRecorded):
        stored_layers(replace(job, result=without))


def test_process_job_stores_the_mask_beside_the_output_with_provenance() -> None:
    store = MemoryStore()
    store.put("in", "discs.png", discs(), content_type="image/png")
    job = _succeeded({"layers": True, "format": "webp"}, {}, "x")
    result = process_job(job, store, FakeSegmenters.serving("fake"), output_bucket="out")
    key = output_key(job, OutputOptions.parse(job.options))
    assert result["layers_mask"] == {"bucket": "out", "key": layers_mask_key(key)}
    assert layers_mask_key(key) == f"cutouts/acme/{job.id}.mask.png"
    mask, output = store.objects[("out", layers_mask_key(key))], store.objects[("out", key)]
    assert mask.content_type == "image/png" and mask.metadata == output.metadata
    assert len(result["layers"]) == 3


def test_process_job_without_layers_stores_only_the_output() -> None:
    store = MemoryStore()
    store.put("in", "discs.png", discs(), content_type="image/png")
    result = process_job(_succeeded({}, {}, "x"), store, FakeSegmenters.serving("fake"),
                         output_bucket="out")
    assert "layers_mask" not in result and "layers" not in result
    assert len([k for k in store.objects if k[0] == "out"]) == 1


def test_selection_keys_are_deterministic_and_apart() -> None:
    key = "cutouts/acme/j.png"
    assert selection_key(key, [2, 0]) == selection_key(key, {0, 2})
    assert selection_key(key, {0, 2}) != selection_key(key, {0})
    assert selection_key(key, {0}).startswith("cutouts/acme/j.layers-")
    assert selection_key(key, {0}).endswith(".png")
    assert layers_mask_key(key) == "cutouts/acme/j.mask.png"


def test_the_option_is_a_boolean_left_out_of_the_canonical_form_when_off() -> None:
    assert "layers" not in OutputOptions.parse({"layers": False}).normalised()
    assert "layers" not in OutputOptions().normalised()  # old jobs keep their identity
    on = OutputOptions.parse({"layers": "true"})
    assert on.layers is True and on.normalised()["layers"] is True
    assert OutputOptions.parse(on.normalised()) == on
    with pytest.raises(errors.InvalidOptions, match="layers"):
        OutputOptions.parse({"layers": "some"})


def test_a_layered_file_too_big_for_memory_is_refused_before_any_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.recompose as module

    monkeypatch.setattr(module, "LAYERED_MAX_BYTES", 1024)
    parts = [{"id": i, "role": "kept"} for i in range(3)]
    with pytest.raises(errors.InvalidLayers, match="MiB"):
        module.layered_file("psd", discs(), b"not read", parts)


def test_a_layered_file_names_an_unknown_part() -> None:
    from pipeline.recompose import layered_file

    with pytest.raises(errors.UnknownLayer, match="no part 5"):
        layered_file("ora", discs(), b"not read", [{"id": 0, "role": "main"}], shown=[5])
