"""Seeded composite sets with exact alpha: class recipes, one item at a time, the set on disk.

A set (format ``clipline-set/1``) is a folder::

    set.json                  what was built, from what, with which seed (written last)
    images/<stem>.png         RGB uint8 composite: the model's input
    masks/<stem>.png          L uint8 ground-truth alpha 0..255 (soft edges kept)
    foreground/<stem>.png     RGB uint8 straight colours of the kept subject(s); where alpha is
                              0, the nearest visible pixel's colour

and ``image == floor(fg * a + bg * (1 - a) + 0.5)`` (``pipeline.quality.compositing``).

Classes (:data:`RECIPES`), each naming the object source kind it draws from (``--objects
KIND=DIR``) and its backgrounds (``studio``: synthesised; ``photo``: ``--backgrounds
photo=DIR``):

* ``product-plain``: a photo object on a studio sweep with a drop and a contact shadow (the
  shadows belong to the background, not to the ground truth);
* ``product-scene``: a photo object on a photo background;
* ``illustration``: a clip-art object on a studio sweep or a photo;
* ``multi``: a sharp photo object and, beside or behind it, a smaller second object blurred as
  if out of focus; the ground truth and the foreground hold only the sharp one;
* ``people``: an object of kind ``people`` on a photo (or studio) background; only when such a
  source is given.

Every random choice comes from one ``numpy.random.Generator`` seeded with the set's seed, and
classes are built in :data:`RECIPES` order, so the same seed and the same source files give
byte-identical files. Errors: :class:`InvalidComposition` for a request that cannot be built
(unknown class, a class whose source is missing, a bad size or count), and
:class:`pipeline.quality.sources.InvalidSources` for unusable folders.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import UsageError
from pipeline.quality import compositing as px
from pipeline.quality.sources import (
    Pool,
    Side,
    SourceFile,
    load_background,
    load_cutout,
    pool_for,
)

SET_FORMAT = "clipline-set/1"
MIN_OBJECT_SIDE = 64  # source pixels: smaller cut-outs would be drawn blurry
MAX_SIZE = 4096


class InvalidComposition(UsageError):
    """A composite set that cannot be built as asked (nothing was written)."""

    reason = "invalid_composition"


@dataclass(frozen=True)
class Recipe:
    """How a class is drawn: the object source kind, the background kinds it may use (in order
    of preference; ``studio`` is always available), the main object's size as a fraction of
    the frame's shorter side, and whether a shadow or an out-of-focus distractor is added."""

    objects: str
    backgrounds: tuple[str, ...]
    fraction: tuple[float, float]
    shadow: bool = False
    distractor: bool = False
    needs_photo: bool = False


RECIPES: dict[str, Recipe] = {
    "product-plain": Recipe("photo", ("studio",), (0.45, 0.8), shadow=True),
    "product-scene": Recipe("photo", ("photo",), (0.35, 0.7), needs_photo=True),
    "illustration": Recipe("clipart", ("studio", "photo"), (0.4, 0.8)),
    "multi": Recipe("photo", ("studio", "photo"), (0.38, 0.6), distractor=True),
    "people": Recipe("people", ("photo", "studio"), (0.45, 0.85)),
}
DEFAULT_CLASSES = ("product-plain", "product-scene", "illustration", "multi")


@dataclass(frozen=True)
class SetRequest:
    """What to build: ``size`` is (w, h) in pixels; ``objects`` and ``backgrounds`` map a
    source kind (``photo``, ``clipart``, ``people``) to its folder."""

    name: str
    seed: int
    split: Side
    size: tuple[int, int]
    classes: tuple[str, ...]
    per_class: int
    eval_share: float
    objects: dict[str, Path]
    backgrounds: dict[str, Path] = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`InvalidComposition` for anything that cannot be built."""
        unknown = [c for c in self.classes if c not in RECIPES]
        if unknown or not self.classes:
            raise InvalidComposition(
                f"unknown class {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(RECIPES)}")
        if self.per_class < 1:
            raise InvalidComposition("--per-class must be at least 1")
        if not all(32 <= s <= MAX_SIZE for s in self.size):
            w, h = self.size
            raise InvalidComposition(f"size {w}x{h} is outside 32..{MAX_SIZE}")
        if not 0.0 < self.eval_share < 1.0:
            raise InvalidComposition("--eval-share must be strictly between 0 and 1")
        known = sorted({r.objects for r in RECIPES.values()})
        unknown = sorted(set(self.objects) - set(known))
        if unknown:
            raise InvalidComposition(f"unknown object kind {', '.join(unknown)}; "
                                     f"known: {', '.join(known)}")
        for c in self.classes:
            recipe = RECIPES[c]
            if recipe.objects not in self.objects:
                raise InvalidComposition(
                    f"class {c} needs --objects {recipe.objects}=DIR")
            if recipe.needs_photo and "photo" not in self.backgrounds:
                raise InvalidComposition(f"class {c} needs --backgrounds photo=DIR")
        extra = set(self.backgrounds) - {"photo"}
        if extra:
            raise InvalidComposition(f"unknown background kind {', '.join(sorted(extra))}; "
                                     "known: photo (studio backgrounds are made, not read)")


@dataclass(frozen=True, eq=False)
class Composite:
    """One item's pixels: ``image`` and ``foreground`` uint8 (H, W, 3), ``alpha`` uint8
    (H, W), ``background`` uint8 (H, W, 3) (everything behind the subject: shadow and
    distractor included), ``distractor`` float64 (H, W) 0..1 blurred alpha of the out-of-focus
    object (None without one), ``meta`` the item's provenance for set.json."""

    image: npt.NDArray[np.uint8] = field(repr=False)
    alpha: npt.NDArray[np.uint8] = field(repr=False)
    foreground: npt.NDArray[np.uint8] = field(repr=False)
    background: npt.NDArray[np.uint8] = field(repr=False)
    distractor: npt.NDArray[np.float64] | None = field(repr=False)
    meta: dict[str, Any]


Cutouts = Pool[npt.NDArray[np.uint8]]


class Composer:
    """Builds the items of one :class:`SetRequest`, in order, from its pools and one seeded
    generator. Folders are scanned at construction (raising ``InvalidSources`` at once)."""

    def __init__(self, request: SetRequest) -> None:
        request.check()
        self.request = request
        self.rng = np.random.default_rng(request.seed)
        w, h = request.size
        kinds = {RECIPES[c].objects for c in request.classes}
        load_obj = functools.partial(load_cutout, min_side=MIN_OBJECT_SIDE, max_side=max(w, h))
        load_bg = functools.partial(load_background, min_side=min(w, h))
        self.objects: dict[str, Cutouts] = {
            k: pool_for(f"objects:{k}", request.objects[k], request.split,
                        request.eval_share, load_obj)
            for k in sorted(kinds)}
        self.backgrounds: dict[str, Cutouts] = {
            k: pool_for(f"backgrounds:{k}", folder, request.split, request.eval_share, load_bg)
            for k, folder in sorted(request.backgrounds.items())}

    def items(self) -> list[tuple[str, str]]:
        """(stem, class) of every item, in the order they are built."""
        order = [c for c in RECIPES if c in self.request.classes]
        return [(f"{c}-{i:04d}", c) for c in order for i in range(self.request.per_class)]

    def compose(self, stem: str, cls: str) -> Composite:
        """The next item (each call advances the generator: call in :meth:`items` order)."""
        recipe, size, rng = RECIPES[cls], self.request.size, self.rng
        meta: dict[str, Any] = {"stem": stem, "class": cls}
        bg = self._background(recipe, meta)
        obj_file, cutout = self.objects[recipe.objects].draw(rng)
        fraction = float(rng.uniform(*recipe.fraction))
        main = px.place(rng, cutout, size, fraction)
        meta.update(object=obj_file.rel, object_source=recipe.objects,
                    box=list(main.box), scale=main.scale)
        if recipe.shadow or (recipe.distractor and meta["background_source"] == "studio"):
            bg = px.add_shadow(rng, bg, main)
            meta["shadow"] = True
        blurred = None
        meta["distractor"] = None
        if recipe.distractor:
            bg, blurred = self._distractor(recipe, obj_file, main, bg, meta)
        bg_u8 = px.to_u8(bg)
        image = px.composite(main.fg, main.alpha, bg_u8)
        return Composite(image, main.alpha, main.fg, bg_u8, blurred, meta)

    def _background(self, recipe: Recipe, meta: dict[str, Any]) -> npt.NDArray[np.float64]:
        rng, size = self.rng, self.request.size
        kinds = [k for k in recipe.backgrounds if k == "studio" or k in self.backgrounds]
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "studio":
            bg, colour = px.studio_background(rng, size)
            meta.update(background=f"studio:{colour}", background_source="studio")
            return bg
        file, photo = self.backgrounds[kind].draw(rng)
        meta.update(background=file.rel, background_source=kind)
        return px.photo_background(rng, photo, size)

    def _distractor(self, recipe: Recipe, main_file: SourceFile, main: px.Placed,
                    bg: npt.NDArray[np.float64], meta: dict[str, Any],
                    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """A second object of the same kind (another file where the pool has one), 45-75% of
        the main object's size, beside or half behind it, blurred out of focus."""
        rng, (w, h) = self.rng, self.request.size
        pool = self.objects[recipe.objects]
        for _ in range(4):
            file, cutout = pool.draw(rng)
            if file.rel != main_file.rel:
                break
        x, y, ow, oh = main.box
        rel = float(rng.uniform(0.45, 0.75))
        toward_centre = 1.0 if x + ow / 2 < w / 2 else -1.0
        side = toward_centre if rng.random() < 0.75 else -toward_centre
        cx = x + ow / 2 + side * ow * rng.uniform(0.45, 0.8)
        cy = y + oh / 2 + oh * rng.uniform(-0.3, 0.2)
        other = px.place(rng, cutout, (w, h), rel * max(ow, oh) / min(w, h), at=(cx, cy))
        sigma = float(min(w, h) * rng.uniform(0.010, 0.022))
        bg, blurred = px.add_blurred(bg, other, sigma)
        meta.update(distractor=file.rel, distractor_box=list(other.box),
                    blur_sigma=round(sigma, 3))
        return bg, blurred

    def provenance(self) -> dict[str, Any]:
        """The files used and skipped, per source, for set.json."""
        pools = [*self.objects.values(), *self.backgrounds.values()]
        return {
            "used": {pool.name: pool.used for pool in pools},
            "skipped": [{"source": s.source, "file": s.rel, "reason": s.reason}
                        for pool in pools for s in pool.skipped],
        }
