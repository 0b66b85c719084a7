"""The core stays pure: only adapters (and the worker shell) may import infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = {"boto3", "botocore", "tritonclient", "onnxruntime", "sqlalchemy", "redis", "celery",
         "psycopg", "alembic", "onnx", "pytriton"}
CORE = [p for p in (ROOT / "pipeline").rglob("*.py") if "adapters" not in p.parts]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_infrastructure(path: Path) -> None:
    assert not (_imports(path) & INFRA)


def test_pipeline_never_imports_celery_or_workers() -> None:
    for path in (ROOT / "pipeline").rglob("*.py"):
        assert not (_imports(path) & {"celery", "workers"}), path
