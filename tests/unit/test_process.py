"""One image end to end through the pure core, with the fake segmenter and in-memory store."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from pipeline import errors
from pipeline.adapters.segmenters.fake import FakeSegmenter, FakeSegmenters
from pipeline.adapters.storage.memory import MemoryStore
from pipeline.jobs import Job, JobStatus
from pipeline.options import OutputOptions
from pipeline.process import cut_out, output_key, process_job
from tests.pictures import square
from tests.unit.corpus import CASES, exif_rotated, png_insert


def red_square(size: tuple[int, int] = (400, 300)) -> bytes:
    return square(size, (100, 80, 220, 200))


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_cut_out_keeps_the_subject_and_clears_the_background() -> None:
    cut = cut_out(red_square(), OutputOptions(), FakeSegmenter(), model="fake")
    img = np.asarray(decode(cut.data))
    assert img.shape == (300, 400, 4)
    assert img[140, 160, 3] == 255 and tuple(img[140, 160, :3]) == (220, 20, 20)
    assert img[10, 10, 3] == 0 and tuple(img[10, 10, :3]) == (0, 0, 0)
    x, y, w, h = cut.metadata["bbox"]
    assert abs(x - 100) <= 4 and abs(y - 80) <= 4 and abs(w - 120) <= 8 and abs(h - 120) <= 8
    assert 0.05 < cut.metadata["foreground_fraction"] < 0.2
    assert set(cut.metadata["timings_ms"]) == {"decode", "infer", "compose", "encode"}
    assert cut.metadata["source"]["size"] == [400, 300]


def test_cut_out_honours_crop_and_format() -> None:
    options = OutputOptions.parse({"format": "jpg", "crop": True, "crop_margin": "10px"})
    cut = cut_out(red_square(), options, FakeSegmenter(), model="fake")
    img = decode(cut.data)
    assert (img.format, img.mode) == ("JPEG", "RGB")
    assert abs(img.size[0] - 140) <= 10 and abs(img.size[1] - 140) <= 10
    assert cut.content_type == "image/jpeg"


def test_exif_rotated_input_comes_out_upright() -> None:
    case = CASES["exif_rotated_6"]
    cut = cut_out(case.data, OutputOptions(), FakeSegmenter(), model="fake")
    assert decode(cut.data).size == case.expect_size


def test_all_background_is_reported_empty_or_refused_when_strict() -> None:
    blank = CASES["plain_white"].data
    cut = cut_out(blank, OutputOptions(), FakeSegmenter(), model="fake")
    assert cut.metadata["empty"] is True
    assert cut.metadata["bbox"] is None
    with pytest.raises(errors.EmptyMask):
        cut_out(blank, OutputOptions(strict_empty=True), FakeSegmenter(), model="fake")


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.expect_error])
def test_every_decodable_odd_input_gives_a_cut_out_of_its_size(name: str) -> None:
    case = CASES[name]
    cut = cut_out(case.data, OutputOptions(), FakeSegmenter(), model="fake")
    out = decode(cut.data)
    assert (out.mode, out.size) == ("RGBA", case.expect_size)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.expect_error])
def test_bad_input_raises_its_typed_permanent_error(name: str) -> None:
    case = CASES[name]
    with pytest.raises(case.expect_error) as info:
        cut_out(case.data, OutputOptions(), FakeSegmenter(), model="fake")
    assert isinstance(info.value, errors.PermanentError)


FAKE = FakeSegmenters.serving("fake")  # the jobs below ask for model "fake"


def _job(options: dict[str, object] | None = None, model: str = "fake") -> Job:
    now = datetime.now(UTC)
    return Job(
        id=uuid.uuid4(), tenant_id="acme", batch_id=None, bucket="in", key="shoes/red.png",
        version=None, options=options or {}, model=model, idempotency_key="k", priority=0,
        status=JobStatus.RUNNING, attempts=1, max_attempts=3, not_before=now, lease_token=None,
        lease_expires_at=None, leased_by=None, last_error_code=None, last_error_message=None,
        result=None, created_at=now, updated_at=now, finished_at=None,
    )


def test_process_job_writes_a_deterministic_key_with_provenance() -> None:
    store = MemoryStore()
    store.put("in", "shoes/red.png", red_square(), content_type="image/png")
    job = _job({"format": "webp"})
    result = process_job(job, store, FAKE, output_bucket="out")
    key = output_key(job, OutputOptions.parse(job.options))
    assert result["output"] == {"bucket": "out", "key": key}
    assert key == f"cutouts/acme/{job.id}.webp"
    stored = store.objects[("out", key)]
    assert stored.content_type == "image/webp"
    assert stored.metadata["job-id"] == str(job.id)
    assert len(stored.metadata["options-hash"]) == 16
    assert {"fetch", "decode", "infer", "compose", "encode", "put"} <= set(result["timings_ms"])
    process_job(job, store, FAKE, output_bucket="out")  # a retry overwrites
    assert len([k for k in store.objects if k[0] == "out"]) == 1


def test_process_job_missing_source_is_object_missing() -> None:
    with pytest.raises(errors.ObjectMissing):
        process_job(_job(), MemoryStore(), FAKE, output_bucket="out")


def test_process_job_invalid_options_are_refused_before_any_work() -> None:
    store = MemoryStore()
    with pytest.raises(errors.InvalidOptions):
        process_job(_job({"format": "gif"}), store, FAKE, output_bucket="out")
    assert store.puts == 0


def test_process_job_runs_the_model_the_job_names() -> None:
    store = MemoryStore()
    store.put("in", "shoes/red.png", red_square(), content_type="image/png")
    models = FakeSegmenters.serving("small", "large")
    result = process_job(_job(model="large"), store, models, output_bucket="out")
    assert models.asked == ["large"]
    assert models.models["large"].calls == [1]  # type: ignore[attr-defined]
    assert models.models["small"].calls == []  # type: ignore[attr-defined]
    assert result["model"] == "large"
    stored = store.objects[("out", result["output"]["key"])]
    assert stored.metadata["model"] == "large"


def test_process_job_of_a_model_not_served_is_model_not_served_before_any_work() -> None:
    store = MemoryStore()  # no source: a fetch first would be object_missing
    models = FakeSegmenters.serving("u2netp")
    with pytest.raises(errors.ModelNotServed, match="'u2net' is not served here; served: u2netp"):
        process_job(_job(model="u2net"), store, models, output_bucket="out")
    assert store.puts == 0 and models.asked == ["u2net"]


def test_exif_helper_makes_a_sideways_file() -> None:
    data = exif_rotated(6)
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == 6


def test_decode_warnings_reach_the_job_result_metadata() -> None:
    store = MemoryStore()
    # A tEXt chunk whose CRC does not match, before the image data: ignored, with a warning.
    damaged = png_insert(square((40, 30), (10, 10, 30, 20)), b"tEXt", b"Comment\x00hi",
                         bad_crc=True)
    store.put("in", "shoes/red.png", damaged, content_type="image/png")
    result = process_job(_job(), store, FAKE, output_bucket="out")
    assert result["decode_warnings"] == ["PNG tEXt chunk has a bad CRC; the chunk was ignored"]
    assert result["source"]["size"] == [40, 30]


def test_sound_source_gives_no_decode_warnings() -> None:
    cut = cut_out(red_square(), OutputOptions(), FakeSegmenter(), model="fake")
    assert "decode_warnings" not in cut.metadata
