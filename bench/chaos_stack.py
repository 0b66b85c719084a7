"""The chaos benchmark's own services, on free ports of 127.0.0.1, and the processes it runs.

Nothing here is shared with the tests or with another run: Redis (its own ``redis-server``), a
PostgreSQL cluster made with ``initdb`` in the run's folder (run as the ``postgres`` user when
this process is root, as PostgreSQL refuses root), moto's S3 server and ``clipline triton
serve``. Every process starts in a session of its own; ``Stack.close`` stops them all, whatever
they left behind (a prefork worker's pool, Triton's server started in a session of its own).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from pipeline.adapters.segmenters.triton_dev_server import READY

CLIPLINE = str(Path(sys.executable).with_name("clipline"))
MOTO = str(Path(sys.executable).with_name("moto_server"))
STOP_GRACE_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:g} s")


def answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc), in pid order."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``, its process group and every descendant's group (some start their own)."""
    groups = {proc.pid}
    for pid in descendants(proc.pid):
        with suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    for group in groups:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(10)


class Stack:
    """The run's folder, its services and every process started through ``spawn``."""

    def __init__(self, root: Path, *, keep: bool = False) -> None:
        self.root, self.keep = root, keep
        self.logs = root / "logs"
        self.logs.mkdir()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.postgres: Postgres | None = None

    def spawn(self, argv: Sequence[str], log_name: str,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.logs / log_name).open("ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                    env=dict(env) if env is not None else None,
                                    start_new_session=True)
        self.processes.append(proc)
        return proc

    def redis(self) -> str:
        port = free_port()
        self.spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(self.root)], "redis.log")
        wait_until(lambda: answers(port), 20, "redis-server")
        return f"redis://127.0.0.1:{port}/0"

    def moto(self) -> str:
        port = free_port()
        self.spawn([MOTO, "-H", "127.0.0.1", "-p", str(port)], "moto.log")
        wait_until(lambda: answers(port), 30, "moto_server")
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        for proc in reversed(self.processes):
            kill_tree(proc)
        if self.postgres is not None:
            self.postgres.stop()
        if self.keep:
            print(f"kept the run's folder: {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


class Postgres:
    """A cluster of its own: ``initdb`` into the run's folder, ``pg_ctl`` to start and restart."""

    def __init__(self, root: Path) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                          key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
        self.bin = versions[-1] if versions else Path(
            shutil.which("pg_ctl") or "pg_ctl").parent
        self.home = root / "postgres"
        self.data, self.log = self.home / "data", self.home / "server.log"
        self.port = free_port()
        self.as_owner: list[str] = []
        self.home.mkdir()
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            owner = pwd.getpwnam("postgres")
            root.chmod(0o711)
            os.chown(self.home, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1"
        self._pg("pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w",
                 "-t", "60", "-o", options, *extra)

    def start(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "-E", "UTF8", "--no-sync")
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with suppress(subprocess.SubprocessError):
                self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")


class Triton:
    """``clipline triton serve`` on three free ports, kept across a stop and a start."""

    def __init__(self, stack: Stack, env: Mapping[str, str]) -> None:
        self.stack, self.env = stack, env
        self.grpc, self.http, self.metrics = free_port(), free_port(), free_port()
        self.log = stack.logs / "triton.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def start(self) -> None:
        """Start the server; ``ready`` says when its model answers."""
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = self.stack.spawn(
            [CLIPLINE, "triton", "serve", "--grpc-port", str(self.grpc), "--http-port",
             str(self.http), "--metrics-port", str(self.metrics)], "triton.log", self.env)

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"clipline triton serve exited; see {self.log}")
        with self.log.open("rb") as log:
            log.seek(self._offset)
            return READY.encode() in log.read()

    def stop(self) -> None:
        """SIGTERM (the command stops its server in order), then SIGKILL whatever lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        left = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_GRACE_SECONDS)
        kill_tree(proc)
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.stack.processes.remove(proc)
