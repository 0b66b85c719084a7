"""Every benchmark runs as its docs say, at a tiny size, and prints its figure line.

A smoke run, not a measurement: each command is the documented one (``python bench/ledger.py``,
``python -m bench.NAME``), started from the repository root in a process of its own, with the
sizes cut down to seconds. It must exit 0 and print the line its figure is read from. So a
benchmark that no longer imports, starts or finishes cannot land.

Real services, as the benchmarks need them: PostgreSQL (each creates and drops its own
database), Redis (a database number of each run's own, used by no other test module), moto,
Triton from ``.venv-triton`` and rembg from ``bench/.venv-rembg`` (``make test`` builds both), and
the shared images in ``../shared/data``.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distkit import PG_SERVER

REPO = Path(__file__).resolve().parents[2]
# Redis databases of the runs that use one: no other test module, nor a benchmark's default, does.
REDIS_DB = {"intake": 14, "orchestration": 15, "end_to_end": 2}
STOP_GRACE_SECONDS = 30

pytestmark = pytest.mark.slow


def run(*argv: str, timeout: float) -> str:
    """``python ARGV`` from the repository root; its stdout, or the test fails with its tail."""
    command = [sys.executable, *argv]
    shown = " ".join(["python", *argv])
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Ctrl-C, so that its finally blocks stop the workers, servers and databases it started.
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"{shown} did not finish in {timeout:g} s\n{_tail(out, err)}")
    assert proc.returncode == 0, f"{shown} exited {proc.returncode}\n{_tail(out, err)}"
    return out


def _tail(out: str, err: str, lines: int = 40) -> str:
    return "\n".join([*out.splitlines()[-lines:], "-- stderr:", *err.splitlines()[-lines:]])


def assert_prints(out: str, *patterns: str) -> None:
    for pattern in patterns:
        assert re.search(pattern, out, re.MULTILINE), f"no line matches {pattern!r} in:\n{out}"


@pytest.mark.postgres
def test_ledger_runs_as_a_script() -> None:
    # As `make bench-ledger` runs it: a file path, so bench/ comes first on sys.path.
    out = run("bench/ledger.py", "--server", PG_SERVER, "--jobs", "1000", "--work-jobs", "200",
              "--workers", "1", "--claim-batch", "10", timeout=60)
    assert_prints(out, r"^bulk submit: +1,000 jobs in +[\d.]+ s = +[\d,]+ jobs/s$",
                  r"^claim→complete: +200 jobs, 1 workers, claim batch 10: +[\d.]+ s = "
                  r"+[\d,]+ jobs/s$")


@pytest.mark.postgres
def test_listing() -> None:
    out = run("-m", "bench.listing", "--jobs", "3000", "--bulk", "1000", "--server", PG_SERVER,
              timeout=60)
    assert_prints(out, r"^== tenant \(page \d+, limit 100\): page_jobs median [\d.]+ ms",
                  r"Index Scan (using|on) ix_jobs_batch_id_txid_id_status",
                  r"^bulk 1,000 with 0005 indexes: [\d.]+ s = [\d,]+ jobs/s$")


@pytest.mark.postgres
def test_intake() -> None:
    out = run("-m", "bench.intake", "--lines", "1000", "--redis-db", str(REDIS_DB["intake"]),
              timeout=60)
    assert_prints(out, r"^every job recorded and queued: [\d.]+ s = [\d,]+ lines/s "
                       r"\(in the ledger: queued 1,000\)$",
                  r"^every message published: [\d.]+ s \(1,000 messages in Redis\)$")


@pytest.mark.postgres
def test_orchestration() -> None:
    out = run("-m", "bench.orchestration", "--jobs", "20", "--processes", "1",
              "--redis-db", str(REDIS_DB["orchestration"]), timeout=60)
    assert_prints(out, r"succeeded 20, worker processes: 1 ",
                  r"^first claim -> last completion: [\d.]+ s = [\d,]+ jobs/s = [\d,]+ jobs/s "
                  r"per worker process$")


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_end_to_end() -> None:
    out = run("-m", "bench.end_to_end", "--count", "2", "--processes", "1",
              "--redis-db", str(REDIS_DB["end_to_end"]), timeout=150)
    assert_prints(out, r"^distributed \(S3 \+ Celery prefork, 1 process \+ Triton\): [\d.]+ img/s$",
                  r"^ratio distributed / in process: \d+\.\d\d$",
                  r"^  infer +[\d.]+ +[\d.]+%$")


@pytest.mark.timeout(240)
def test_chaos() -> None:
    # Its own services on free ports (no shared Redis database); Triton down from the start for
    # a few seconds, a flush, a PostgreSQL restart and pool processes SIGKILLed while the few
    # jobs run. (A lone worker whose main process is killed every few seconds never finishes
    # starting: that is a test of patience, not of the benchmark.)
    out = run("-m", "bench.chaos", "--jobs", "12", "--images", "12", "--workers", "1",
              "--kill", "pool", "--kill-every", "5", "--flush-at", "1", "--pg-restart-at", "2",
              "--triton-down-at", "0", "--triton-outage", "4", "--deadline", "120", timeout=200)
    assert_prints(out, r"^submitted: 12 \(\d+ good; bad: ",
                  r"^never terminal: 0 ", r"^jobs with more than one succeeded .*: 0$",
                  r"^waiting messages above pending jobs: in \d+ of \d+ samples",
                  r"^goal met: yes$")


@pytest.mark.timeout(420)
def test_edges(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first call compiles pymatting's kernels with numba in a fresh environment (over a
    # minute here); the benchmark does it before its timings.
    monkeypatch.setenv("CLIPLINE_MODELS_DIR", str(models_dir))
    out = run("-m", "bench.edges", "--count", "1", timeout=400)
    assert_prints(out, r"^engine \(decode, infer, compose, encode\): \d+ ms$",
                  r"^edges work_side=  512: +\d+ ms +\(\d+\.\d\dx engine\); band drift ")


@pytest.mark.timeout(300)
def test_edges_eval_keep_reproduces_its_baseline(models_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The replay's own check: with --edges keep every cut-out is the baseline's, byte for byte,
    # so every class moves by exactly 0 (the CI gate's set: 24 images at 256 px, u2netp).
    monkeypatch.setenv("CLIPLINE_MODELS_DIR", str(models_dir))
    subprocess.run([str(REPO / "scripts" / "quality-gate-set.sh"), str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    clipline = str(Path(sys.executable).parent / "clipline")
    subprocess.run([clipline, "eval", str(tmp_path / "ci-gate"), "--model", "u2netp", "--out",
                    str(tmp_path / "base")], check=True, capture_output=True, timeout=200)
    out = run("-m", "bench.edges_eval", str(tmp_path / "base"), str(tmp_path / "ci-gate"),
              "--edges", "keep", "--out", str(tmp_path / "keep"), timeout=120)
    assert_prints(out, r"^gate: passed$")
    base = tmp_path / "base" / "cutouts"
    cuts = sorted(base.rglob("*.png"))
    assert len(cuts) == 24
    for cut in cuts:
        assert (tmp_path / "keep" / "cutouts" / cut.relative_to(base)).read_bytes() == \
            cut.read_bytes()


def test_vs_rembg(models_dir: Path, tmp_path: Path) -> None:
    out = run("-m", "bench.vs_rembg", "--count", "2", "--rounds", "1", "--side", "320",
              "--floor-seconds", "0.5", "--models-dir", str(models_dir),
              "--rembg-home", str(tmp_path / "rembg-home"), timeout=60)
    assert_prints(out, r"^ratio clipline/rembg: \d+\.\d\d ",
                  r"^masks, clipline against rembg, 2 images: IoU mean [01]\.\d{4} ")


def test_fidelity_with_rembg(models_dir: Path, tmp_path: Path) -> None:
    out = run("-m", "bench.fidelity", "--rembg", "--count", "2", "--models-dir", str(models_dir),
              "--rembg-home", str(tmp_path / "rembg-home"), timeout=60)
    # The mean row: four figures for clipline, then four for rembg.
    assert_prints(out, r"^mean +2(?: +[01]\.\d{4}){8}$")


def test_each_run_has_a_redis_database_no_other_test_module_uses() -> None:
    taken: dict[int, list[str]] = {}
    for path in [*(REPO / "tests").rglob("*.py"), *(REPO / "bench").glob("*.py")]:
        if path != Path(__file__):
            text = path.read_text()
            # A cluster's database (or distkit's default), or a benchmark's default.
            numbers = re.findall(r"redis_db(?:: int)? ?= ?(\d+)", text)
            numbers += re.findall(r'"--redis-db", type=int, default=(\d+)', text)
            for number in numbers:
                taken.setdefault(int(number), []).append(str(path.relative_to(REPO)))
    mine = set(REDIS_DB.values())
    assert len(mine) == len(REDIS_DB)
    assert {n: taken[n] for n in mine if n in taken} == {}
