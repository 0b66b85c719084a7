"""Composition root: settings in, concrete adapters out. Called once per process."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import InferenceUnavailable
from pipeline.models import get_spec, resolve
from pipeline.ports import Segmenter
from pipeline.retry import Backoff
from pipeline.settings import Settings


def segmenter(settings: Settings, *, threads: int | None = None) -> Segmenter:
    """The configured model runner. ``threads`` caps ONNX Runtime's intra-op threads."""
    spec = get_spec(settings.model)
    if settings.segmenter == "triton":
        raise InferenceUnavailable(
            "the Triton segmenter is not built yet; use CLIPLINE_SEGMENTER=onnx"
        )
    from pipeline.adapters.onnx_segmenter import OnnxSegmenter

    # Other threads decode and encode meanwhile: spinning ONNX workers would steal their CPU.
    return OnnxSegmenter(
        resolve(spec, settings.model_folder), spec, intra_op_threads=threads,
        allow_spinning=False,
    )


def embedded_ledger(state_dir: Path):  # type: ignore[no-untyped-def]
    """The SQLite ledger of an embedded run, migrated to the newest schema."""
    from pipeline.adapters.database import make_engine, upgrade
    from pipeline.adapters.ledger_sql import SqlLedger

    url = f"sqlite:///{(state_dir / 'ledger.sqlite3').resolve()}"
    upgrade(url)
    # Short backoff: a local retry (a file being written, say) need not wait long.
    return SqlLedger(make_engine(url), backoff=Backoff(base=0.2, cap=2.0))
