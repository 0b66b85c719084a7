"""A real Triton server for tests: pytriton's tritonserver from ``.venv-triton``, in a process
group of its own, on free ports of 127.0.0.1.

``TritonServer`` starts, stops and restarts one server (same ports: clients reconnect to the
same address); the session fixture ``triton`` serves the real u2netp uint8 graph. A pytest
plugin (tests/conftest.py lists it), so every test can ask for ``triton``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import pytest

from pipeline.adapters.segmenters.triton_dev_server import READY
from pipeline.triton_launch import ServeOptions, server_command, uint8_graph
from tests.modelkit import TEST_MODEL

STOP_GRACE_SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TritonServer:
    """One development Triton server; its log goes to ``log_path`` (shown when start fails).

    It serves ``model_file`` as ``model_name``, and every model of ``more`` (name → uint8
    graph) beside it under its own name."""

    def __init__(
        self,
        model_file: Path,
        model_name: str = TEST_MODEL,
        *,
        more: Mapping[str, Path] | None = None,
        delay_ms: int = 0,
        max_batch_size: int = 16,
        log_dir: Path | None = None,
        threads: int = 1,
    ) -> None:
        self.model_file = model_file
        self.models = {model_name: model_file, **(more or {})}
        self.options = ServeOptions(
            grpc_port=free_port(), http_port=free_port(),
            metrics_port=free_port(), max_batch_size=max_batch_size, delay_ms=delay_ms,
            threads=threads,
        )
        folder = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
        self.log_path = folder / f"triton-{model_name}-{self.options.grpc_port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        """The gRPC address (CLIPLINE_TRITON_URL)."""
        return f"127.0.0.1:{self.options.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.options.http_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60) -> TritonServer:
        """Start the server and wait until its model answers; on failure, raise with its log."""
        if self.running:
            return self
        began = time.monotonic()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        # A session of its own: stop() signals the whole group (tritonserver, backend stubs).
        self._process = subprocess.Popen(
            server_command(self.models, self.options),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        while time.monotonic() - began < timeout:
            if READY.encode() in self._read_log(offset):
                self.start_seconds = time.monotonic() - began
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.1)
        code = self._process.poll()
        self.stop()
        state = f"exited with {code}" if code is not None else f"not ready after {timeout:g} s"
        raise RuntimeError(
            f"Triton {state}; its log ({self.log_path}):\n"
            + self._read_log(offset).decode(errors="replace")[-6000:]
        )

    def stop(self) -> None:
        """SIGTERM to the server (it stops tritonserver and cleans up its shared memory), then
        SIGKILL to its whole process group, for whatever lingers."""
        process, self._process = self._process, None
        if process is not None:
            # Not to the group: tritonserver and the backend stubs would each start their own
            # shutdown at once, racing the orderly one the server script does.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_SECONDS)
            # Children may outlive the leader (or the leader may have ignored SIGTERM).
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _read_log(self, offset: int) -> bytes:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(pgid, signum)


@pytest.fixture(scope="session")
def u2netp_uint8(models_dir: Path) -> Path:
    """The real u2netp rewritten to uint8 NHWC (exported into the model cache once)."""
    from pipeline.models import U2NETP

    return uint8_graph(U2NETP, models_dir)


@pytest.fixture(scope="session")
def triton(u2netp_uint8: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A running Triton serving u2netp (uint8 graph) for the whole session.

    A test that stops it must start it again before it ends.
    """
    server = TritonServer(u2netp_uint8, log_dir=tmp_path_factory.mktemp("triton"))
    server.start()
    yield server
    server.stop()
