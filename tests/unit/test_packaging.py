"""What the wheel is made of: every package of the tree, and the top-level migrations/ shipped as
``pipeline.migrations``, found from the installed location (the wheel itself is built in
tests/deploy/test_wheel.py)."""

from __future__ import annotations

import importlib.metadata
import pkgutil
import re
import sys
import tomllib
from pathlib import Path

from alembic.script import ScriptDirectory

from pipeline.adapters.ledger.database import alembic_config, head_revision, migrations_folder
from pipeline.triton_launch import SERVER_SCRIPT

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
REVISION = re.compile(r'^revision = "([^"]+)"$', re.MULTILINE)


def _source_packages() -> dict[str, str]:
    """Every folder of Python files under the code's top-level folders, by its installed name."""
    found: dict[str, str] = {}
    for top, installed in (("clipline", "clipline"), ("pipeline", "pipeline"),
                           ("workers", "workers"), ("training", "training"),
                           ("migrations", "pipeline.migrations")):
        for folder in sorted({p.parent for p in (ROOT / top).rglob("*.py")}):
            rest = folder.relative_to(ROOT / top).parts
            found[".".join([installed, *rest])] = str(folder.relative_to(ROOT))
    return found


def test_pyproject_lists_every_package_of_the_tree_and_nothing_else() -> None:
    assert sorted(SETUPTOOLS["packages"]) == sorted(_source_packages())


def test_the_migrations_ship_as_pipeline_migrations() -> None:
    assert SETUPTOOLS["package-dir"] == {"pipeline.migrations": "migrations"}
    assert SETUPTOOLS["package-data"]["pipeline.migrations"] == ["script.py.mako"]
    assert (ROOT / "migrations" / "script.py.mako").is_file()
    assert "script_location = migrations" in (ROOT / "alembic.ini").read_text()


def test_the_installed_migrations_are_the_trees_and_alembic_finds_every_one() -> None:
    folder = migrations_folder()
    tree = {p.name: p.read_bytes() for p in (ROOT / "migrations" / "versions").glob("*.py")}
    installed = {p.name: p.read_bytes() for p in (folder / "versions").glob("*.py")}
    assert len(tree) >= 5 and installed == tree
    declared = {REVISION.search(text.decode()).group(1)  # type: ignore[union-attr]
                for text in tree.values()}
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert {s.revision for s in scripts.walk_revisions()} == declared
    assert head_revision() == max(declared)  # one chain, numbered in order


def test_no_module_beside_the_triton_server_script_shadows_an_importable_name() -> None:
    """The script runs by path, so its folder comes first on sys.path in .venv-triton: a module
    there named like a package (onnx.py, triton.py) would stand in for that package."""
    beside = {m.name for m in pkgutil.iter_modules([str(SERVER_SCRIPT.parent)])}
    taken = (set(importlib.metadata.packages_distributions()) | set(sys.stdlib_module_names)
             | {"numpy", "onnx", "onnxruntime", "pytriton", "triton", "tritonclient"})
    assert "triton_dev_server" in beside
    assert sorted(beside & taken) == []
