"""Training batches made on the fly: composites from ``clipline datasets compose``'s composer,
real photo/mask pairs, and unlabelled photos for a teacher term, shaped as the deployed model
sees its input.

Each item goes through the deployed path: composed at a size larger than the model's (one of
``compose_sizes``, chosen per item), augmented (colour and lighting on the image only,
horizontal flip, mild Gaussian noise, a JPEG re-encode), resized to the model's input size as
:func:`pipeline.imaging.decode.model_input_from_rgba` resizes an opaque upload (LANCZOS, the
frame squashed to the model's aspect), then normalised by the model's own
:meth:`pipeline.models.Normalisation.to_nchw`. The alpha is squashed the same way, bilinear,
in float. Scale, position, shadows and out-of-focus distractors come from the composer's
recipes.

Only ``train``-side files of the object and background folders are ever drawn (the split is
by file, :func:`pipeline.quality.sources.side_of`), so eval sets built with ``--split eval``
and the same ``eval_share`` share no object and no background with training.

Determinism: every random choice comes from numpy generators spawned from ``seed``: one for
the plan (class order in a batch, compose size, pair order), one inside the composer, one for
augmentation (a child generator per item, so the strength changes pixels but never which
items are drawn), one for the teacher photos. :meth:`TrainStream.state` is JSON and
:meth:`TrainStream.restore` continues the exact stream. Errors: :class:`InvalidStream` (a
:class:`pipeline.errors.UsageError`) for a mix or a restore that cannot be served.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from pipeline.errors import ClipError, UsageError
from pipeline.imaging.decode import decode, model_input_from_rgba
from pipeline.models import U2NETP, Normalisation
from pipeline.quality.composer import RECIPES, Composer, SetRequest
from pipeline.quality.sources import SOURCE_LIMITS, Pool, Skipped, scan, side_of

PAIRS = "pairs"
DEFAULT_EVAL_SHARE = 0.3  # `clipline datasets compose --eval-share`'s default
DEFAULT_COMPOSE_SIZES: tuple[tuple[int, int], ...] = ((480, 480), (560, 420), (420, 560))
STATE_VERSION = 1
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


class InvalidStream(UsageError):
    """A mix, a batch size or a saved state this stream cannot serve."""

    reason = "invalid_stream"


class StageLike(Protocol):
    """What :meth:`TrainStream.batch_for` reads of a training stage."""

    @property
    def name(self) -> str: ...
    @property
    def mix(self) -> Mapping[str, float]: ...
    @property
    def augment(self) -> float: ...


@dataclass(frozen=True)
class Sources:
    """Where training items come from: ``objects`` and ``backgrounds`` map a kind to a folder
    (as ``datasets compose`` takes them); ``pairs`` are folders each with ``images/`` and
    ``masks/<stem>.png`` (a real set's train split, used whole); ``photos`` are folders of
    unlabelled real photos for :meth:`TrainStream.photos_batch`."""

    objects: Mapping[str, Path]
    backgrounds: Mapping[str, Path] = field(default_factory=dict)
    pairs: tuple[Path, ...] = ()
    photos: tuple[Path, ...] = ()


@dataclass(frozen=True, eq=False)
class Batch:
    """``images`` float32 [n, 3, h, w] normalised as the model's input, ``alpha`` float32
    [n, 1, h, w] in 0..1, ``classes`` and ``meta`` (the composer's provenance, or the pair's
    files) per item."""

    images: F32 = field(repr=False)
    alpha: F32 = field(repr=False)
    classes: list[str]
    meta: list[dict[str, Any]] = field(repr=False)


def quotas(mix: Mapping[str, float], n: int, served: Mapping[str, int], slots: int
           ) -> dict[str, int]:
    """How many of each class the next batch of ``n`` holds, given ``served`` (per class) over
    the ``slots`` items drawn so far under this mix: largest remainder on what each class is
    owed, so every batch follows the mix within one item and the running totals stay within
    one item of exact. Classes of weight 0 get none."""
    total = sum(Fraction(w) for w in mix.values())
    owed = {c: Fraction(w) / total * (slots + n) - served.get(c, 0) for c, w in mix.items()}
    take = {c: max(0, int(owed[c])) if mix[c] > 0 else 0 for c in mix}
    live = [c for c in mix if mix[c] > 0]
    while sum(take.values()) > n:  # only after the mix was over-served by rounding
        c = min((c for c in live if take[c] > 0), key=lambda c: owed[c] - take[c])
        take[c] -= 1
    while sum(take.values()) < n:
        c = max(live, key=lambda c: owed[c] - take[c])
        take[c] += 1
    return take


def _check_mix(mix: Mapping[str, float], servable: set[str]) -> None:
    bad = [c for c in mix if c not in RECIPES and c != PAIRS]
    if bad:
        raise InvalidStream(f"unknown class {', '.join(bad)}; known: "
                            f"{', '.join([*RECIPES, PAIRS])}")
    if any(not np.isfinite(w) or w < 0 for w in mix.values()) or not any(mix.values()):
        raise InvalidStream("mix weights must be finite, at least 0, and not all 0")
    missing = [c for c, w in mix.items() if w > 0 and c not in servable]
    if missing:
        raise InvalidStream(f"no sources for class {', '.join(missing)}")


def augment_item(rng: np.random.Generator, image: U8, alpha: U8, strength: float
                 ) -> tuple[U8, U8]:
    """Colour and lighting (brightness, contrast, saturation, a gentle cast) on the image,
    a horizontal flip of both, mild Gaussian noise and a JPEG re-encode (quality 40..95), each
    scaled by ``strength`` (0..1); 0 returns the inputs unchanged. Draws a fixed count from
    ``rng`` before any pixel work."""
    flip = rng.random() < 0.5
    bright, contrast, sat = 1.0 + strength * rng.uniform(-1.0, 1.0, 3) * (0.25, 0.3, 0.35)
    cast = 1.0 + strength * rng.uniform(-0.06, 0.06, 3)
    noisy, noise_sigma = rng.random() < 0.4 * strength, strength * rng.uniform(1.0, 5.0)
    jpeg, quality = rng.random() < 0.5 * strength, int(rng.integers(40, 96))
    noise_seed = int(rng.integers(2**63))
    if strength <= 0.0:
        return image, alpha
    if flip:
        image, alpha = image[:, ::-1], alpha[:, ::-1]
    x = image.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = grey[..., None] + (x - grey[..., None]) * np.float32(sat)
    x = (x - np.float32(grey.mean())) * np.float32(contrast) + np.float32(grey.mean())
    x *= (bright * cast).astype(np.float32)
    if noisy:
        x += np.random.default_rng(noise_seed).standard_normal(x.shape, np.float32) * noise_sigma
    out = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    if jpeg:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=quality)
        out = np.asarray(Image.open(buf).convert("RGB"))
    return np.ascontiguousarray(out), np.ascontiguousarray(alpha)


def to_model(image: U8, alpha: U8 | None, size: tuple[int, int]) -> tuple[U8, F32 | None]:
    """The image resized to ``size`` = (h, w) as the deployed segmenter's input is, and the
    alpha (uint8) squashed the same way, bilinear, as float32 0..1."""
    h, w = size
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    pixels = model_input_from_rgba(rgba, size, opaque=True)
    if alpha is None:
        return pixels, None
    plane = Image.fromarray(alpha.astype(np.float32) / np.float32(255.0), "F")
    if plane.size != (w, h):
        plane = plane.resize((w, h), Image.Resampling.BILINEAR)
    return pixels, np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0)


def _sharing(first: Composer, size: tuple[int, int]) -> Composer:
    """A composer for another frame ``size`` that draws from ``first``'s generator and pools
    (one stream of choices and one cache of decoded sources, whatever the size)."""
    other = Composer.__new__(Composer)
    other.request = dataclasses.replace(first.request, size=size)
    other.request.check()
    other.rng, other.objects, other.backgrounds = first.rng, first.objects, first.backgrounds
    return other


def _gen(seq: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seq))


def _files_of(folder: Path) -> list[Path]:
    return [f.path for f in scan(folder, 0.0)]


class TrainStream:
    """Batches for training, from ``sources``, for the model input ``size`` = (h, w)."""

    def __init__(self, sources: Sources, *, seed: int, size: tuple[int, int] = U2NETP.input_size,
                 compose_sizes: Sequence[tuple[int, int]] = DEFAULT_COMPOSE_SIZES,
                 eval_share: float = DEFAULT_EVAL_SHARE,
                 normalisation: Normalisation = U2NETP.normalisation) -> None:
        if not compose_sizes:
            raise InvalidStream("compose_sizes must name at least one (w, h)")
        self.sources, self.size, self.eval_share = sources, size, eval_share
        self.normalisation = normalisation
        plan, comp, aug, photos = np.random.SeedSequence(seed).spawn(4)
        self.plan, self.aug, self.photo_rng = _gen(plan), _gen(aug), _gen(photos)
        self.composer_seed = int(comp.generate_state(1, np.uint64)[0] >> np.uint64(1))
        kinds = set(sources.objects)
        self.classes = [c for c, r in RECIPES.items() if r.objects in kinds
                        and (not r.needs_photo or "photo" in sources.backgrounds)]
        self.composers = [Composer(SetRequest(
            name="train", seed=self.composer_seed, split="train", size=compose_sizes[0],
            classes=tuple(self.classes), per_class=1, eval_share=eval_share,
            objects=dict(sources.objects), backgrounds=dict(sources.backgrounds)))
            ] if self.classes else []
        for s in compose_sizes[1:] if self.classes else ():
            self.composers.append(_sharing(self.composers[0], s))
        self.pairs = [(i, d / "images", p, d / "masks" / f"{p.stem}.png")
                      for i, d in enumerate(sources.pairs) for p in _files_of(d / "images")]
        # Only the train side of a photos folder: a folder that also feeds composites
        # (backgrounds) must not show the teacher the evaluation side's pictures.
        self.photo_files = [p for d in sources.photos for p in _files_of(d)
                            if side_of(p.relative_to(d).as_posix(), eval_share) == "train"]
        self.pair_skipped: list[str] = []
        self._pair_order: list[int] | None = None
        self._pair_next = 0
        self._photo_order: list[int] | None = None
        self._photo_next = 0
        self._mix: list[tuple[str, float]] | None = None
        self._served: dict[str, int] = {}
        self._slots = 0
        self.batches = 0

    # -- batches -------------------------------------------------------------------------

    def batch_for(self, stage: StageLike, n: int) -> Batch:
        """:meth:`batch` with the stage's mix and augmentation strength."""
        return self.batch(stage.mix, n, stage.augment)

    def batch(self, mix: Mapping[str, float], n: int, augment: float) -> Batch:
        """``n`` items, the classes in proportion to ``mix`` (see :func:`quotas`), in a
        shuffled order, augmented at ``augment`` (0..1)."""
        if n < 1 or not 0.0 <= augment <= 1.0:
            raise InvalidStream(f"need n >= 1 and augment in 0..1, got {n} and {augment}")
        _check_mix(mix, {*self.classes, *([PAIRS] if self.pairs else [])})
        key = sorted((c, float(w)) for c, w in mix.items())
        if key != self._mix:
            self._mix, self._served, self._slots = key, {}, 0
        take = quotas(mix, n, self._served, self._slots)
        for c, k in take.items():
            self._served[c] = self._served.get(c, 0) + k
        self._slots += n
        order = [c for c in mix for _ in range(take[c])]
        order = [order[i] for i in self.plan.permutation(n)]
        pixels: list[U8] = []
        alphas: list[F32] = []
        metas: list[dict[str, Any]] = []
        for i, cls in enumerate(order):
            image, alpha, meta = self._pair() if cls == PAIRS else self._composite(cls, i)
            item_rng = np.random.default_rng(int(self.aug.integers(2**63)))
            image, alpha = augment_item(item_rng, image, alpha, augment)
            small, a = to_model(image, alpha, self.size)
            assert a is not None
            pixels.append(small)
            alphas.append(a)
            metas.append(meta)
        self.batches += 1
        images = self.normalisation.to_nchw(np.stack(pixels))
        return Batch(images, np.stack(alphas)[:, None], order, metas)

    def _composite(self, cls: str, i: int) -> tuple[U8, U8, dict[str, Any]]:
        composer = self.composers[int(self.plan.integers(len(self.composers)))]
        item = composer.compose(f"b{self.batches:07d}-{i:03d}", cls)
        item.meta["size"] = list(composer.request.size)
        return item.image, item.alpha, item.meta

    def _pair(self) -> tuple[U8, U8, dict[str, Any]]:
        if self._pair_order is None:
            self._pair_order = [int(i) for i in self.plan.permutation(len(self.pairs))]
        while self._pair_order:
            slot = self._pair_next % len(self._pair_order)
            _, folder, image_path, mask_path = self.pairs[self._pair_order[slot]]
            try:
                image, alpha = _read_pair(image_path, mask_path)
            except _Unusable as exc:
                self.pair_skipped.append(f"{image_path}: {exc}")
                del self._pair_order[slot]
                continue
            self._pair_next = slot + 1
            return image, alpha, {"class": PAIRS, "folder": str(folder.parent),
                                  "image": image_path.relative_to(folder.parent).as_posix(),
                                  "mask": mask_path.relative_to(folder.parent).as_posix()}
        raise InvalidStream(f"no usable photo/mask pair: {len(self.pairs)} tried")

    def photos_batch(self, n: int) -> F32:
        """``n`` unlabelled photos, each a random crop (60..100% of each side) maybe mirrored,
        as the model's normalised input [n, 3, h, w]."""
        if not self.photo_files:
            raise InvalidStream("no photos folder was given")
        rng, out = self.photo_rng, list[U8]()
        if self._photo_order is None:
            self._photo_order = [int(i) for i in rng.permutation(len(self.photo_files))]
        while len(out) < n:
            if not self._photo_order:
                raise InvalidStream("no usable photo in the photos folders")
            slot = self._photo_next % len(self._photo_order)
            kw, kh, fx, fy, flip = rng.uniform(0.6, 1.0, 2).tolist() + rng.random(3).tolist()
            try:
                rgb = _read_rgb(self.photo_files[self._photo_order[slot]], self.size)
            except _Unusable:
                del self._photo_order[slot]
                continue
            self._photo_next = slot + 1
            h, w = rgb.shape[:2]
            ch, cw = max(1, int(h * kh)), max(1, int(w * kw))
            y, x = int(fy * (h - ch)), int(fx * (w - cw))
            crop = rgb[y : y + ch, x : x + cw]
            out.append(to_model(crop[:, ::-1] if flip < 0.5 else crop, None, self.size)[0])
        return self.normalisation.to_nchw(np.stack(out))

    # -- provenance and resuming ----------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 over the sorted relative paths and byte sizes of every train-side source
        file this stream can draw (objects, backgrounds, pairs, photos)."""
        rows: list[str] = []
        for label, folders in (("objects", self.sources.objects),
                               ("backgrounds", self.sources.backgrounds)):
            for kind, folder in sorted(folders.items()):
                rows += [f"{label}:{kind}/{f.rel}\t{f.path.stat().st_size}"
                         for f in scan(folder, self.eval_share) if f.side == "train"]
        for i, _, image, mask in self.pairs:
            root = self.sources.pairs[i]
            rows += [f"pairs:{i}/{p.relative_to(root).as_posix()}\t"
                     f"{p.stat().st_size if p.exists() else -1}" for p in (image, mask)]
        for photo in self.photo_files:
            j = next(j for j, d in enumerate(self.sources.photos) if photo.is_relative_to(d))
            rows.append(f"photos:{j}/{photo.relative_to(self.sources.photos[j]).as_posix()}"
                        f"\t{photo.stat().st_size}")
        return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()

    def _pools(self) -> dict[str, Pool[Any]]:
        if not self.composers:
            return {}
        first = self.composers[0]
        return {p.name: p for p in (*first.objects.values(), *first.backgrounds.values())}

    def state(self) -> dict[str, Any]:
        """Everything the stream's future depends on, JSON-serialisable."""
        return {
            "version": STATE_VERSION, "fingerprint": self.fingerprint(), "batches": self.batches,
            "rng": {"plan": self.plan.bit_generator.state, "aug": self.aug.bit_generator.state,
                    "photos": self.photo_rng.bit_generator.state,
                    "composer": self.composers[0].rng.bit_generator.state
                    if self.composers else None},
            "pools": {name: {"order": p._order, "next": p._next, "used": list(p.used),
                             "skipped": [[s.source, s.rel, s.reason] for s in p.skipped]}
                      for name, p in self._pools().items()},
            "pairs": {"order": self._pair_order, "next": self._pair_next,
                      "skipped": list(self.pair_skipped)},
            "photos": {"order": self._photo_order, "next": self._photo_next},
            "quota": {"mix": self._mix, "served": dict(self._served), "slots": self._slots},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` (same sources, seed and sizes); raises
        :class:`InvalidStream` when the state is of another version or other source files."""
        if state.get("version") != STATE_VERSION:
            raise InvalidStream(f"stream state version {state.get('version')!r} is not "
                                f"{STATE_VERSION}")
        if state["fingerprint"] != self.fingerprint():
            raise InvalidStream("the source files differ from those the state was saved with")
        rng = state["rng"]
        self.plan.bit_generator.state = rng["plan"]
        self.aug.bit_generator.state = rng["aug"]
        self.photo_rng.bit_generator.state = rng["photos"]
        if self.composers:
            self.composers[0].rng.bit_generator.state = rng["composer"]
        pools = self._pools()
        if set(pools) != set(state["pools"]):
            raise InvalidStream("the state's source pools differ from this stream's")
        for name, saved in state["pools"].items():
            pool = pools[name]
            pool._order = None if saved["order"] is None else list(saved["order"])
            pool._next = saved["next"]
            pool.used = list(saved["used"])
            pool.skipped = [Skipped(*s) for s in saved["skipped"]]
        pairs, photos, quota = state["pairs"], state["photos"], state["quota"]
        self._pair_order = None if pairs["order"] is None else list(pairs["order"])
        self._pair_next, self.pair_skipped = pairs["next"], list(pairs["skipped"])
        self._photo_order = None if photos["order"] is None else list(photos["order"])
        self._photo_next = photos["next"]
        self._mix = None if quota["mix"] is None else [(c, w) for c, w in quota["mix"]]
        self._served, self._slots = dict(quota["served"]), quota["slots"]
        self.batches = state["batches"]


class _Unusable(Exception):
    """A pair or photo file that cannot be read; ``str(exc)`` says why."""


def _read_rgb(path: Path, size: tuple[int, int]) -> U8:
    """RGB uint8 of an image file through the product's decoder (orientation, ICC, limits),
    decoded at a reduced size where the format allows (never under ``size``)."""
    try:
        decoded = decode(path.read_bytes(), SOURCE_LIMITS, draft_to=(size[1], size[0]))
    except (OSError, ClipError) as exc:
        raise _Unusable(str(exc)) from exc
    rgba = np.asarray(decoded.rgba)
    if not decoded.has_alpha:
        return np.ascontiguousarray(rgba[..., :3])
    return model_input_from_rgba(rgba, rgba.shape[:2])  # over white, as deployed


def _read_pair(image_path: Path, mask_path: Path) -> tuple[U8, U8]:
    """The image (RGB) and its mask (L) at the image's decoded size; the mask must have the
    image's aspect within 2%."""
    image = _read_rgb(image_path, (1024, 1024))
    try:
        with Image.open(mask_path) as im:
            mask = im.convert("L")
    except OSError as exc:
        raise _Unusable(f"mask: {exc}") from exc
    h, w = image.shape[:2]
    if abs(mask.width / mask.height - w / h) > 0.02 * w / h:
        raise _Unusable(f"mask {mask.width}x{mask.height} does not match the image {w}x{h}")
    if mask.size != (w, h):
        mask = mask.resize((w, h), Image.Resampling.BILINEAR)
    return image, np.asarray(mask)


__all__ = ["DEFAULT_COMPOSE_SIZES", "DEFAULT_EVAL_SHARE", "PAIRS", "Batch", "InvalidStream",
           "Sources", "StageLike", "TrainStream", "augment_item", "quotas", "to_model"]
