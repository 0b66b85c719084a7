"""An ``ObjectStore`` over local folders: a bucket is a folder, a key a relative path in it.

Writes are atomic (a temporary file renamed into place), so a crash never leaves half a cut-out
under the final name, and a retry simply replaces the file. The temporary file's name is short
(``.<start of the name>.<random>.part``), so any name the file system takes can be written.
A name it refuses as too long (255 bytes per component on most) is ``OutputNameTooLong``, and
a folder or file in the way of the output is ``OutputCollision``: both permanent.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.errors import (
    AccessDenied,
    ObjectMissing,
    ObjectTooLarge,
    OutputCollision,
    OutputNameTooLong,
    StorageUnavailable,
)
from pipeline.ports import SignedPut

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; set back at once
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
"""What ``open()`` would give a new file under the process's umask (read once, at import)."""


class FileStore:
    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes

    @staticmethod
    def path(bucket: str, key: str) -> Path:
        """The file for (bucket, key); a key that climbs out of its bucket is refused."""
        root = Path(bucket).resolve()
        path = (root / key).resolve()
        if root != path and root not in path.parents:
            raise AccessDenied(f"key {key!r} points outside {bucket!r}")
        return path

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes:
        path = self.path(bucket, key)
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise ObjectTooLarge(f"{path} has {size} bytes, the limit is {self.max_bytes}")
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectMissing(f"no file {path}") from exc
        except PermissionError as exc:
            raise AccessDenied(f"cannot read {path}") from exc
        except OSError as exc:
            raise StorageUnavailable(f"reading {path}: {exc}") from exc

    def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        path = self.path(bucket, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.",
                                       suffix=".part")
            try:
                os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; a cut-out is an ordinary file
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except PermissionError as exc:
            raise AccessDenied(f"cannot write {path}") from exc
        except OSError as exc:
            raise _write_error(path, exc) from exc

    def presign_put(self, bucket: str, key: str, *, content_type: str, size: int,
                    sha256: str | None = None, expires: int = 900) -> SignedPut:
        """The file's ``file:`` URL, for a client on this host: nothing is signed, so neither
        the size, the type nor the expiry binds it; a worker checks the file when it reads it
        (the byte cap, the decoder), as it checks any source."""
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        return SignedPut(self.path(bucket, key).as_uri(), headers,
                         datetime.now(UTC) + timedelta(seconds=expires))


def _write_error(path: Path, exc: OSError) -> Exception:
    """The typed failure for an ``OSError`` met writing ``path``."""
    if exc.errno == errno.ENAMETOOLONG:
        longest = max(len(os.fsencode(part)) for part in path.parts)
        return OutputNameTooLong(f"cannot write {path}: the name is too long for the file "
                                 f"system ({longest} bytes in its longest part)")
    if exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOTEMPTY):
        return OutputCollision(f"cannot write {path}: {exc.strerror} (a folder or a file of "
                               "that name is in the way)")
    return StorageUnavailable(f"writing {path}: {exc}")
