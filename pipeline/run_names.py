"""How an embedded run names its cut-outs: unique by construction, and never an overwrite.

The rule (``clipline run --help`` and the README say the same):

1. A cut-out keeps its source's path with the extension replaced: ``a/b.jpg`` → ``a/b.png``.
2. When two or more images of the run share a folder and a stem (``shoe.jpg``, ``shoe.png``,
   ``Shoe.webp``), each keeps its source's extension too: ``shoe.jpg.png``, ``shoe.png.png``,
   ``Shoe.webp.png``. Names are compared as macOS and Windows compare them, ignoring case and
   Unicode normalisation, so the cut-outs stay apart on any file system.
3. The names are computed over the whole run at once, in sorted order, so they do not depend on
   the order the files were found. A name still wanted twice after that (a file literally
   named ``shoe.jpg.png`` beside ``shoe.jpg`` and ``shoe.png``) goes to the first source in
   sorted order, and the others fail with ``output_collision``. A name that is also a folder
   other cut-outs go into (``a.jpg`` → ``a.png`` beside a folder ``a.png/``) stays the
   folder's: that file fails with ``output_collision``.
4. Across runs into the same DST (another SRC, or a source that has since left SRC), an output
   file that a job of another source recorded is never overwritten: the job fails with
   ``output_collision``. A source run again (changed, or with other options) replaces its own
   cut-out.

Pure, but for the loader that ``OutputOwners`` is given.
"""

from __future__ import annotations

import posixpath
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pipeline.errors import OutputCollision

Source = tuple[str, str]
"""(bucket, key): the source folder and the file's path in it."""


def fold(name: str) -> str:
    """``name`` as a case-insensitive, normalisation-insensitive file system compares it."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """The output name of every source key of one run; ``refused`` says why a key has none."""

    names: Mapping[str, str]
    refused: Mapping[str, str]

    def name_for(self, key: str) -> str:
        """The key's output name; ``OutputCollision`` when another source has it."""
        name = self.names.get(key)
        if name is not None:
            return name
        raise OutputCollision(self.refused.get(key, f"{key} is not a source of this run"))


def plan_outputs(keys: Iterable[str], extension: str) -> OutputPlan:
    """Name the cut-outs of ``keys`` (relative POSIX paths) by the rule in the module's doc."""
    ordered = sorted(keys)
    stems = {key: posixpath.splitext(key)[0] for key in ordered}
    shared = Counter(fold(stem) for stem in stems.values())
    wanted = {key: (stem if shared[fold(stem)] == 1 else key) + extension
              for key, stem in stems.items()}
    folders = {fold(parent) for name in wanted.values() for parent in _parents(name)}
    holder: dict[str, str] = {}
    names: dict[str, str] = {}
    refused: dict[str, str] = {}
    for key in ordered:
        name, folded = wanted[key], fold(wanted[key])
        if folded in holder:
            refused[key] = f"output {name} is already the cut-out of {holder[folded]}"
        elif folded in folders:
            refused[key] = f"output {name} is a folder of other cut-outs"
        else:
            holder[folded] = key
            names[key] = name
    return OutputPlan(names, refused)


def _parents(name: str) -> Iterable[str]:
    parent = posixpath.dirname(name)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


class OutputOwners:
    """Which source's job last recorded each output file of DST, loaded from the ledger the
    first time an output file is found already there (a fresh output needs no look-up)."""

    def __init__(self, load: Callable[[], Iterable[tuple[str, Source]]]) -> None:
        """``load`` yields (output name, source) of succeeded jobs, oldest finish first."""
        self._load = load
        self._owners: dict[str, Source] | None = None
        self._lock = threading.Lock()

    def check(self, name: str, source: Source, *, exists: bool) -> None:
        """``OutputCollision`` if ``name`` exists and another source's job recorded it."""
        if not exists:
            return
        with self._lock:
            if self._owners is None:
                self._owners = {fold(out): src for out, src in self._load()}
            owner = self._owners.get(fold(name))
        if owner is not None and owner != source:
            raise OutputCollision(f"output {name} is the cut-out of {owner[1]} in {owner[0]}; "
                                  "it is not overwritten (move it away, then redrive)")

    def record(self, name: str, source: Source) -> None:
        with self._lock:
            if self._owners is not None:
                self._owners[fold(name)] = source
