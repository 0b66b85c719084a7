"""Benchmark module names: none shadows an importable name, and every one the docs cite exists.

``python bench/ledger.py`` puts ``bench/`` first on ``sys.path``, so a module there named like a
package stands in for it: ``bench/pipeline.py`` once did, and ``import pipeline.adapters`` failed
with "'pipeline' is not a package". The same goes for the standard library and for any top-level
module of a distribution installed in this environment.
"""

from __future__ import annotations

import importlib.metadata
import pkgutil
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
# The repository's own top-level names: its packages, and the folders importable from its root.
REPO_NAMES = frozenset({"clipline", "pipeline", "workers", "migrations", "tests", "bench"})
DOCS = ("Makefile", "README.md", "docs/PERFORMANCE.md")
# `bench/ledger.py`, `bench.vs_rembg`: a module named in a command or a sentence.
CITED = re.compile(r"(?<![\w/.-])bench[./](\w+)")
TARGET = re.compile(r"^(bench-[a-z-]+):", re.MULTILINE)


def bench_modules() -> set[str]:
    return {m.name for m in pkgutil.iter_modules([str(BENCH)])}


def taken_names() -> set[str]:
    installed = importlib.metadata.packages_distributions()
    return set(REPO_NAMES) | set(installed) | set(sys.stdlib_module_names)


def test_the_benchmarks_are_found() -> None:
    # Guards the next test against passing on an empty listing.
    assert {"ledger", "intake", "orchestration", "end_to_end", "vs_rembg", "fidelity",
            "masks"} <= bench_modules()


def test_no_bench_module_shadows_an_importable_name() -> None:
    clashes = sorted(bench_modules() & taken_names())
    assert clashes == [], (
        ", ".join(f"bench/{name}.py" for name in clashes) + " would stand in for the top-level "
        "module of the same name whenever a benchmark runs as a script: name it for what it "
        "measures instead"
    )


def test_every_bench_module_the_docs_cite_exists() -> None:
    texts = {name: (REPO / name).read_text() for name in DOCS}
    texts |= {f"bench/{p.name}": p.read_text() for p in BENCH.glob("*.py")}
    cited = {(where, name) for where, text in texts.items() for name in CITED.findall(text)}
    missing = sorted((where, name) for where, name in cited
                     if name not in bench_modules())
    assert missing == []


def test_every_bench_target_the_docs_cite_exists() -> None:
    targets = set(TARGET.findall((REPO / "Makefile").read_text()))
    cited = {t for name in DOCS[1:] for t in re.findall(r"make (bench-[a-z-]+)",
                                                        (REPO / name).read_text())}
    assert cited - targets == set()
    assert cited >= targets  # and each target is documented
