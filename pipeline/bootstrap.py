"""Composition root: settings in, concrete adapters out. Called once per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.errors import InvalidSettings
from pipeline.models import get_spec, resolve
from pipeline.ports import ObjectStore, Queue, Segmenter
from pipeline.reconcile import ReconcileConfig
from pipeline.retry import Backoff
from pipeline.settings import Settings
from pipeline.worker import JobRunner, RunnerConfig, Translate

# Small on purpose: the fake stands in for a model so that everything else can be measured.
FAKE_SIZE = (64, 64)


def segmenter(settings: Settings, *, threads: int | None = None) -> Segmenter:
    """The configured model runner. ``threads`` caps ONNX Runtime's intra-op threads."""
    spec = get_spec(settings.model)
    if settings.segmenter == "fake":
        from pipeline.adapters.segmenters.fake import FakeSegmenter

        return FakeSegmenter(FAKE_SIZE)
    if settings.segmenter == "triton":
        from pipeline.adapters.segmenters.triton_client import TritonSegmenter

        # Triton serves the uint8 rewrite under the original model's name (u2netp).
        return TritonSegmenter(
            settings.triton_url,
            settings.triton_model or spec.derived_from or spec.name,
            model_version=settings.triton_model_version,
            protocol=settings.triton_protocol,
            timeout=settings.triton_timeout_seconds,
            expected_size=spec.input_size,
        )
    from pipeline.adapters.segmenters.onnx_runtime import OnnxSegmenter

    # Other threads decode and encode meanwhile: spinning ONNX workers would steal their CPU.
    return OnnxSegmenter(
        resolve(spec, settings.model_folder), spec, intra_op_threads=threads,
        allow_spinning=False,
    )


def embedded_ledger(state_dir: Path):  # type: ignore[no-untyped-def]
    """The SQLite ledger of an embedded run, migrated to the newest schema."""
    from pipeline.adapters.ledger.database import make_engine, upgrade
    from pipeline.adapters.ledger.sql import SqlLedger

    url = f"sqlite:///{(state_dir / 'ledger.sqlite3').resolve()}"
    upgrade(url)
    # Short backoff: a local retry (a file being written, say) need not wait long.
    return SqlLedger(make_engine(url), backoff=Backoff(base=0.2, cap=2.0))


def object_store(settings: Settings) -> ObjectStore:
    """Where workers read sources and write cut-outs."""
    if settings.object_store == "folder":
        from pipeline.adapters.storage.file import FileStore

        return FileStore(max_bytes=settings.max_input_bytes)
    from pipeline.adapters.storage.s3 import S3Store, make_client

    return S3Store(make_client(settings), max_bytes=settings.max_input_bytes)


def output_bucket(settings: Settings) -> str:
    if settings.s3_output_bucket:
        return settings.s3_output_bucket
    if settings.object_store == "folder":
        return str((settings.data_dir / "cutouts").resolve())
    raise InvalidSettings("CLIPLINE_S3_OUTPUT_BUCKET is not set: workers need a bucket for "
                          "cut-outs")


def job_runner(
    settings: Settings, queue: Queue, *, worker: str, translate: Translate | None = None,
    segmenter_threads: int | None = None,
) -> JobRunner:
    """Everything a worker process needs to run jobs, built from the settings."""
    from pipeline.adapters.ledger.sql import SqlLedger

    config = RunnerConfig(
        worker=worker,
        output_bucket=output_bucket(settings),
        output_prefix=settings.output_prefix,
        limits=settings.decode_limits,
        heartbeat_seconds=settings.heartbeat_seconds,
        max_countdown_seconds=settings.max_countdown_seconds,
        breaker_threshold=settings.breaker_threshold,
        breaker_probe_seconds=settings.breaker_probe_seconds,
        # A message is held at most half the soft limit before it goes back unclaimed, and a
        # finished job's ledger write is retried no longer than its lease would hold it.
        breaker_wait_seconds=settings.task_soft_time_limit_seconds / 2,
        ledger_retry_seconds=settings.lease_seconds,
    )
    ledger = SqlLedger.from_settings(settings)
    model = LazySegmenter(
        lambda: segmenter(settings, threads=segmenter_threads),
        FAKE_SIZE if settings.segmenter == "fake" else get_spec(settings.model).input_size,
    )
    return JobRunner(ledger, object_store(settings), model, queue, ledger.clock, config,
                     translate=translate)


class LazySegmenter:
    """Builds the real segmenter on first use, and again after a failed build.

    A worker process may start while Triton is restarting: building eagerly would fail the
    process before it could even claim a job. Built lazily, the job is claimed, fails with
    ``InferenceUnavailable`` and is retried with backoff like any other outage.
    """

    def __init__(self, build: Callable[[], Segmenter], input_size: tuple[int, int]) -> None:
        self._build = build
        self._size = input_size
        self._inner: Segmenter | None = None
        self._lock = threading.Lock()

    @property
    def input_size(self) -> tuple[int, int]:
        return self._size

    def warm(self) -> Segmenter:
        with self._lock:
            if self._inner is None:
                self._inner = self._build()
            return self._inner

    def predict(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        return self.warm().predict(images)


def reconcile_config(settings: Settings) -> ReconcileConfig:
    return ReconcileConfig(
        batch_size=settings.reconcile_batch_size,
        lost_after_seconds=settings.reconcile_lost_after_seconds,
    )
