"""The layers stay apart, judged by every import of every file (one inside a function counts).

- ``pipeline`` imports neither Celery, ``workers`` nor ``clipline``;
- ``workers`` imports ``pipeline``, never ``clipline``;
- ``clipline``, the shell for the command line, may import both;
- only ``pipeline/adapters`` and ``workers`` import infrastructure (the command line composes
  adapters, it does not import vendors itself);
- no module imports itself back through others: no import cycle in the three packages;
- ``training`` (torch) may import ``pipeline``; ``pipeline`` and ``workers`` never import it
  nor torch, and the command line imports it only inside the functions of the commands that
  train or export, so the worker, the API and every other command run without torch;
- every command is reachable from the one entry point, ``clipline.cli:main``.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer

ROOT = Path(__file__).resolve().parents[2]
INFRA = {"boto3", "botocore", "tritonclient", "onnxruntime", "sqlalchemy", "redis", "celery",
         "psycopg", "alembic", "onnx", "pytriton", "watchfiles"}
CORE = [p for p in (ROOT / "pipeline").rglob("*.py") if "adapters" not in p.parts]
SHELL = sorted((ROOT / "clipline").rglob("*.py"))
LAYERS = ("pipeline", "workers", "clipline", "training")

# What `clipline --help` offers, group by group: `clipline db upgrade` is "db upgrade".
COMMANDS = {
    "run", "recompose", "demo", "status", "redrive", "worker", "reconcile", "api", "submit",
    "events", "eval", "train",
    "db upgrade", "db downgrade", "db current",
    "models list", "models pull", "models export-uint8", "models export", "models register",
    "triton serve",
    "tenants create", "tenants key", "tenants revoke", "tenants show", "tenants secret",
    "datasets compose", "datasets synth-sources",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_infrastructure(path: Path) -> None:
    assert not (_imports(path) & INFRA)


@pytest.mark.parametrize("path", SHELL, ids=lambda p: str(p.relative_to(ROOT)))
def test_command_line_module_imports_no_infrastructure(path: Path) -> None:
    assert not (_imports(path) & INFRA)


def test_pipeline_never_imports_celery_workers_or_the_command_line() -> None:
    for path in _files("pipeline"):
        assert not (_imports(path) & {"celery", "workers", "clipline"}), path


def test_workers_never_import_the_command_line() -> None:
    for path in _files("workers"):
        assert "clipline" not in _imports(path), path


def test_only_training_imports_torch_and_nothing_below_it_imports_training() -> None:
    for layer in ("pipeline", "workers"):
        for path in _files(layer):
            assert not (_imports(path) & {"torch", "training"}), path
    for path in SHELL:
        assert "torch" not in _imports(path), path


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_command_line_imports_training_only_inside_the_commands_that_need_it() -> None:
    importers = {p.name for p in SHELL if "training" in _imports(p)}
    assert importers == {"train.py", "models.py"}
    for path in SHELL:
        assert "training" not in _top_level_imports(path), path


def test_the_worker_the_api_and_the_command_line_load_without_torch() -> None:
    """Imported for real in a fresh interpreter: no module on their import graph pulls torch."""
    code = ("import sys, workers.app, workers.tasks, pipeline.api.app, clipline.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# -- import cycles ------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for layer in LAYERS for p in _files(layer)}


def _imported_modules(name: str, path: Path) -> set[str]:
    """The modules of ``MODULES`` that ``name`` imports by name, anywhere in the file.

    ``from a.b import c`` is an import of ``a.b.c`` when that is a module, else of ``a.b``; the
    parent packages Python imports on the way are not counted (every submodule would otherwise
    form a cycle with a package that imports it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def _cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the path around it (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_nothing_else() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_the_modules_of_pipeline_workers_and_the_command_line() -> None:
    graph = {name: _imported_modules(name, path) for name, path in MODULES.items()}
    # The graph is the real one: the entry point imports its commands, a command its context.
    assert {"clipline.cli.submit", "clipline.cli.events"} <= graph["clipline.cli"]
    assert "clipline.cli.context" in graph["clipline.cli.events"]
    assert "pipeline.adapters.ledger.bulk_insert" in graph["pipeline.adapters.ledger.sql"]
    assert _cycle(graph) is None


# -- the one entry point ------------------------------------------------------------------------


def _leaves(command: Any, prefix: str = "") -> Iterator[str]:
    children = getattr(command, "commands", None)
    if children is None:
        yield prefix
        return
    for name, child in children.items():
        yield from _leaves(child, f"{prefix} {name}".strip())


def _entry_point() -> Any:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"clipline": "clipline.cli:main"}
    module, _, function = scripts["clipline"].partition(":")
    entry = importlib.import_module(module)
    assert callable(getattr(entry, function))
    return entry


def test_every_command_is_reachable_from_the_one_entry_point() -> None:
    app = _entry_point().app
    assert set(_leaves(typer.main.get_command(app))) == COMMANDS


def _callbacks(app: typer.Typer) -> Iterator[Any]:
    yield from (info.callback for info in app.registered_commands)
    for group in app.registered_groups:
        assert group.typer_instance is not None
        yield from _callbacks(group.typer_instance)


def test_every_command_defined_in_the_command_line_package_is_mounted() -> None:
    """A command function or a Typer group written in clipline/cli but never added to the app
    would be unreachable: each one is the callback of a command the entry point offers."""
    app = _entry_point().app
    mounted = set(_callbacks(app))
    groups = {g.typer_instance for g in app.registered_groups}
    for path in SHELL:
        module = importlib.import_module(_module_name(path))
        for name, value in vars(module).items():
            if isinstance(value, typer.Typer) and value is not app:
                assert value in groups, f"{module.__name__}.{name} is not a group of `clipline`"
            elif callable(value) and getattr(value, "__module__", None) == module.__name__:
                defaults = getattr(value, "__defaults__", None) or ()
                if any(isinstance(d, typer.models.ParameterInfo) for d in defaults):
                    assert value in mounted, f"{module.__name__}.{name} is not a command"
