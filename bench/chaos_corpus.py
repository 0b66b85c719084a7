"""What the chaos benchmark submits: generated product photos, a few bad on purpose, and the
jobs made of them, each with the outcome it must reach.

Job j reads image j % images with output options ``VARIANTS[j // images]``, so 200 images give
up to 1,200 distinct jobs; every tenth job is interactive (priority 5). One image in 100 of each
bad kind: truncated (``corrupt_image``), random bytes (``not_an_image``), never uploaded
(``object_missing``).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

VARIANTS: tuple[dict[str, Any], ...] = (
    {}, {"format": "webp"}, {"format": "jpg"}, {"crop": True},
    {"format": "webp", "max_side": 160}, {"crop": True, "crop_margin": "10%"},
)
BAD_KINDS = ("corrupt_image", "not_an_image", "object_missing")


@dataclass(frozen=True)
class Planned:
    """One job as submitted, and what it must end as: succeeded, or dead with ``expect``."""

    idempotency_key: str
    key: str
    options: dict[str, Any]
    priority: int
    expect: str | None


def picture(rng: random.Random) -> bytes:
    """A product on a plain ground: a rectangle or an ellipse, as a JPEG."""
    w, h = rng.randrange(240, 420), rng.randrange(240, 420)
    img = Image.new("RGB", (w, h), tuple(rng.randrange(200, 256) for _ in range(3)))
    box = (rng.randrange(w // 8, w // 3), rng.randrange(h // 8, h // 3),
           rng.randrange(2 * w // 3, 7 * w // 8), rng.randrange(2 * h // 3, 7 * h // 8))
    shape = ImageDraw.Draw(img).rectangle if rng.random() < 0.5 else ImageDraw.Draw(img).ellipse
    shape(box, fill=tuple(rng.randrange(0, 180) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def corpus(images: int, jobs: int, rng: random.Random) -> tuple[dict[str, bytes], list[Planned]]:
    """The objects to upload (key → bytes) and the jobs to submit, as the module says."""
    per_kind = max(1, images // 100)
    drawn = rng.sample(range(images), 3 * per_kind)
    bad = {slot: BAD_KINDS[n // per_kind] for n, slot in enumerate(drawn)}
    objects: dict[str, bytes] = {}
    for i in range(images):
        data = picture(rng)
        if bad.get(i) == "corrupt_image":
            data = data[: len(data) // 2]
        elif bad.get(i) == "not_an_image":
            data = rng.randbytes(len(data))
        if bad.get(i) != "object_missing":
            objects[f"chaos/{i:04d}.jpg"] = data
    planned = [Planned(f"chaos-{j}", f"chaos/{j % images:04d}.jpg", VARIANTS[j // images],
                       5 if j % 10 == 0 else 0, bad.get(j % images)) for j in range(jobs)]
    return objects, planned
