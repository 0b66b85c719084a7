"""The wheel the images install, built from exactly what their Dockerfiles copy: every module of
the tree is in it, the top-level migrations/ as ``pipeline.migrations`` (so that
``clipline db upgrade`` works from a plain install), and the one ``clipline`` entry point.

The build runs pip with build isolation (setuptools from the package index, as pyproject.toml
pins it); a machine that cannot get setuptools skips the test and says why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.test_docker import DOCKERFILES, _stages

ROOT = Path(__file__).resolve().parents[2]
INSTALLED_AS = {"migrations": "pipeline/migrations"}


def _builder_sources() -> list[str]:
    """What the api image's builder stage copies from the context."""
    _, stages = _stages(DOCKERFILES["api"])
    sources: list[str] = []
    for instruction, rest in stages[0]:
        if instruction == "COPY" and "--from=" not in rest:
            sources += [s for s in rest.split()[:-1] if not s.startswith("--")]
    return sources


def _expected_files() -> set[str]:
    """Each file of the wheel's sources, by the path it has inside the wheel."""
    expected = {"pipeline/py.typed", "pipeline/migrations/script.py.mako"}
    # The review page's shell (``pipeline.api.ui``), served from the installed package.
    expected |= {f"pipeline/api/static/{p.name}" for p in (ROOT / "pipeline/api/static").iterdir()}
    for top in ("clipline", "pipeline", "workers", "training", "migrations"):
        for path in (ROOT / top).rglob("*.py"):
            inside = path.relative_to(ROOT / top).as_posix()
            expected.add(f"{INSTALLED_AS.get(top, top)}/{inside}")
    return expected


@pytest.mark.slow
def test_the_images_wheel_holds_every_module_the_migrations_and_the_entry_point(
        tmp_path: Path) -> None:
    context = tmp_path / "src"
    for source in _builder_sources():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, context / source)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--wheel-dir", str(tmp_path / "dist"), str(context)],
        capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 and "setuptools" in done.stderr and (
            "No matching distribution" in done.stderr or "Could not find a version" in done.stderr):
        pytest.skip(f"no setuptools to build with: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("clipline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(info).decode()
    missing = sorted(_expected_files() - names)
    assert missing == []
    assert "pipeline/migrations/versions/0001_ledger.py" in names
    assert not any(n.startswith(("migrations/", "tests/")) for n in names)
    assert "[console_scripts]\nclipline = clipline.cli:main" in entry_points
