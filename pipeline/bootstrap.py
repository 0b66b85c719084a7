"""Composition root: settings in, concrete adapters out. Called once per process."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import InvalidSettings
from pipeline.model_registry import ModelRegistry
from pipeline.models import get_spec, resolve
from pipeline.ports import ObjectStore, Queue, Segmenter
from pipeline.reconcile import ReconcileConfig
from pipeline.retry import Backoff
from pipeline.settings import Settings
from pipeline.worker import JobRunner, RunnerConfig, Translate

# Small on purpose: the fake stands in for a model so that everything else can be measured.
FAKE_SIZE = (64, 64)


def segmenter(
    settings: Settings, *, model: str | None = None, threads: int | None = None
) -> Segmenter:
    """The runner of ``model`` (default: the settings' default model). ``threads`` caps ONNX
    Runtime's intra-op threads. Raises ``ModelError`` (a missing or altered file) and, for
    Triton, ``InferenceUnavailable`` (not answering, or not serving the model)."""
    name = model or settings.model
    spec = get_spec(name, settings.model_folder)
    if settings.segmenter == "fake":
        from pipeline.adapters.segmenters.fake import FakeSegmenter

        return FakeSegmenter(FAKE_SIZE)
    if settings.segmenter == "triton":
        from pipeline.adapters.segmenters.triton_client import TritonSegmenter

        return TritonSegmenter(
            settings.triton_url,
            triton_name(settings, name),
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


def triton_name(settings: Settings, model: str) -> str:
    """The name ``model`` has on Triton: TRITON_MODEL for the default model when it is set,
    else the original spec's name (Triton serves each uint8 rewrite under it: ``u2net``; a
    trained model under its own registered name)."""
    if model == settings.model and settings.triton_model:
        return settings.triton_model
    spec = get_spec(model, settings.model_folder)
    return spec.derived_from or spec.name


def segmenters(settings: Settings, *, threads: int | None = None) -> ModelRegistry:
    """Every served model (``Settings.served``), each built on its first job."""
    def size(name: str) -> tuple[int, int]:
        if settings.segmenter == "fake":
            return FAKE_SIZE
        return get_spec(name, settings.model_folder).input_size

    return ModelRegistry(
        settings.served, lambda name: segmenter(settings, model=name, threads=threads), size)


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
    models = segmenters(settings, threads=segmenter_threads)
    return JobRunner(ledger, object_store(settings), models, queue, ledger.clock, config,
                     translate=translate)


def reconcile_config(settings: Settings) -> ReconcileConfig:
    return ReconcileConfig(
        batch_size=settings.reconcile_batch_size,
        lost_after_seconds=settings.reconcile_lost_after_seconds,
    )
