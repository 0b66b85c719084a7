"""Registering a trained model in the models folder, and publishing it to a Triton repository.

A registered model NAME is four files in the models folder, known by name to everything that
takes a model (``get_spec(name, models_dir)``: ``clipline run --model``, workers'
``CLIPLINE_MODEL`` and ``CLIPLINE_SERVED_MODELS``, ``clipline eval``, ``clipline triton serve``):

- ``NAME.onnx`` and ``NAME.onnx.sha256``: the graph, with the tensors of the released u2netp
  (``input.1`` float [N, 3, H, W], the mask as output ``output_index``, sigmoid applied);
- ``NAME.uint8.onnx`` and its ``.sha256``: the form Triton serves (``export_uint8``), checked
  against the graph on sample images before it is kept;
- ``NAME.model.json``: the card (``pipeline.model_card``), written last. Without a card there is
  no model, so a registration that stops half-way (a crash, a uint8 graph that does not match)
  leaves files nobody uses, never a half-registered model. Replacing a model removes its card
  first, for the same reason.

``register`` is what ``clipline models register`` (a graph trained elsewhere) and the trainer's
own export call. ``triton_version_folder`` adds a registered model's uint8 graph to a Triton model
repository as a new version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import json_limits
from pipeline.errors import InvalidField, ModelError, ModelExists
from pipeline.model_card import ModelCard, card_path, name_problem, parse
from pipeline.models import (
    CHUNK,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPECS,
    ModelSpec,
    Normalisation,
    atomic_write_bytes,
    get_spec,
    record_sha256,
    sidecar_path,
    trained_spec,
)

U2NETP_NORMALISATION = Normalisation(mean=IMAGENET_MEAN, std=IMAGENET_STD)
UINT8_TOLERANCE = 1e-4


@dataclass(frozen=True)
class RegisteredModel:
    spec: ModelSpec
    path: Path  # NAME.onnx
    uint8_path: Path  # NAME.uint8.onnx
    card_path: Path  # NAME.model.json
    sha256: str
    replaced: bool  # a model of that name was registered before
    # How far the uint8 graph's masks are from the graph's on the sample images (0..1 scale).
    uint8_max_abs: float


def register(
    models_dir: Path,
    name: str,
    onnx_path: Path,
    *,
    base: str,
    provenance: Mapping[str, Any],
    input_size: tuple[int, int] = (320, 320),
    normalisation: Normalisation = U2NETP_NORMALISATION,
    output_index: int = 0,
    replace: bool = False,
    sample_count: int = 8,
    tolerance: float = UINT8_TOLERANCE,
) -> RegisteredModel:
    """Make ``onnx_path`` the model ``name`` of ``models_dir`` (see the module docstring).

    Refuses, before writing anything: a bad name (``InvalidField``), a built-in model's name or
    a registered one without ``replace`` (``ModelExists``), an unknown or uint8 ``base``, a
    provenance that is not a JSON object, a missing file (``ModelError``). A graph whose
    tensors are not the spec's, or whose uint8 form does not match it, is a ``ModelError`` and
    leaves no model registered."""
    replaced = check_new_name(models_dir, name, replace=replace)
    card = _card(name, base, provenance, input_size, normalisation, output_index, models_dir)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: no such file")
    models_dir.mkdir(parents=True, exist_ok=True)
    card_file = card_path(models_dir, name)
    # Staged in a hidden folder beside the models: a graph that fails its checks leaves the
    # folder (and a model being replaced) as it was.
    stage = Path(tempfile.mkdtemp(prefix=f".register-{name}.", dir=models_dir))
    try:
        staged, digest = _copy_hashing(onnx_path, stage / card.filename)
        card = dataclasses.replace(card, sha256=digest)
        spec = trained_spec(card)
        from pipeline.adapters.segmenters.onnx_graph import export_uint8, sample_images

        staged_uint8, report = export_uint8(staged, spec, sample_images(input_size, sample_count),
                                            tolerance=tolerance)
        if replaced:
            card_file.unlink()  # from here until the new card, NAME is not a model at all
        final = models_dir / card.filename
        uint8_path = models_dir / staged_uint8.name
        for moved in (staged, staged_uint8, sidecar_path(staged_uint8)):
            os.replace(moved, models_dir / moved.name)
        record_sha256(final, digest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    atomic_write_bytes(card_file, card.to_bytes())  # last: now NAME is a model
    return RegisteredModel(spec=spec, path=final, uint8_path=uint8_path, card_path=card_file,
                           sha256=digest, replaced=replaced, uint8_max_abs=report.max_abs)


def check_new_name(models_dir: Path, name: str, *, replace: bool = False) -> bool:
    """Whether ``name`` is already registered (and may be replaced); raises what
    :func:`register` would for the name alone, so that a command can refuse before hours of
    training: ``InvalidField`` (malformed), ``ModelExists`` (a built-in, or taken without
    ``replace``)."""
    if name in SPECS or name.removesuffix("-uint8") in SPECS:
        raise ModelExists(f"{name!r} is a built-in model; a trained model needs a name of its "
                          "own (e.g. u2netp-shoes)")
    if problem := name_problem(name):
        raise InvalidField("name", problem)
    taken = card_path(models_dir, name).exists()
    if taken and not replace:
        raise ModelExists(f"a model called {name!r} is already registered in {models_dir}; "
                          "pass --replace to replace it")
    return taken


def _card(name: str, base: str, provenance: Mapping[str, Any], input_size: tuple[int, int],
          normalisation: Normalisation, output_index: int, models_dir: Path) -> ModelCard:
    """The card to write (sha256 still empty), every field checked as a reader would."""
    base_spec = get_spec(base, models_dir)
    if base_spec.layout != "float_nchw":
        raise ModelError(f"base {base!r} is a uint8 form; name the model it was made from")
    if base == name:
        raise ModelError(f"{name!r} cannot be its own base")
    try:
        json.dumps(dict(provenance), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"provenance must be a JSON object: {exc}") from exc
    card = ModelCard(
        name=name, input_size=input_size, mean=normalisation.mean, std=normalisation.std,
        scale=normalisation.scale, output_index=output_index, sha256="0" * 64, base=base,
        created=datetime.now(UTC).isoformat(timespec="seconds"), provenance=dict(provenance),
    )
    try:
        return parse(card.to_json())  # what cannot be read back is never written
    except ValueError as exc:
        raise ModelError(f"model {name!r}: {exc}") from exc


def _copy_hashing(src: Path, dst: Path) -> tuple[Path, str]:
    """Copy ``src`` to ``dst`` (a new file); ``dst`` and the sha256 of what was copied."""
    digest = hashlib.sha256()
    with src.open("rb") as fh, dst.open("xb") as out:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    dst.chmod(0o644)
    return dst, digest.hexdigest()


# -- Triton model repository ---------------------------------------------------------------

_VERSION = re.compile(r"[1-9][0-9]{0,8}")
_PLATFORM = re.compile(r'^platform:\s*"([^"]*)"', re.MULTILINE)
PLATFORM = "onnxruntime_onnx"

CONFIG_TEMPLATE = """\
# {name}: a trained model's uint8 graph (`clipline models register`, NAME.uint8.onnx copied
# to N/model.onnx) on Triton's ONNX Runtime backend. The tensors are those the Triton segmenter
# checks at start: uint8 at the spec's size in, 'mask' out. For a GPU, build a plan from the
# same graph (deploy/triton/build_engine.sh) and switch the platform to tensorrt_plan.
name: "{name}"
platform: "{platform}"
max_batch_size: 16
input [
  {{
    name: "image"
    data_type: TYPE_UINT8
    dims: [ {h}, {w}, 3 ]
  }}
]
output [
  {{
    name: "mask"
    data_type: TYPE_FP32
    dims: [ {h}, {w} ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ 4, 8, 16 ]
  max_queue_delay_microseconds: 2000
}}
instance_group [
  {{
    kind: KIND_CPU
    count: 1
  }}
]
"""


def triton_config(name: str, input_size: tuple[int, int]) -> str:
    """``config.pbtxt`` of ``name``: the shape of docker/triton/model_repository/u2netp's."""
    h, w = input_size
    return CONFIG_TEMPLATE.format(name=name, platform=PLATFORM, h=h, w=w)


def triton_version_folder(
    repo_dir: Path, name: str, uint8_path: Path, version: int | None = None, *,
    input_size: tuple[int, int] = (320, 320),
) -> Path:
    """Add ``uint8_path`` to the Triton model repository ``repo_dir`` as ``NAME/<version>/
    model.onnx``: ``version`` or the next whole number after the highest there. Writes
    ``NAME/config.pbtxt`` when there is none; an existing one is kept (it may be tuned), unless
    it serves another platform than ONNX Runtime (``ModelError``). An existing version is never
    overwritten (``ModelExists``). The version appears whole or not at all: it is staged in a
    hidden folder, which Triton ignores, and renamed into place. Returns the version folder."""
    if problem := name_problem(name):
        raise InvalidField("name", problem)
    if version is not None and not _VERSION.fullmatch(str(version)):
        raise InvalidField("version", "a Triton version is a whole number from 1")
    if not uint8_path.is_file():
        raise ModelError(f"{uint8_path}: no such file")
    entry = repo_dir / name
    entry.mkdir(parents=True, exist_ok=True)
    _ensure_config(entry / "config.pbtxt", name, input_size)
    number = version if version is not None else _next_version(entry)
    target = entry / str(number)
    if target.exists() and any(target.iterdir()):
        raise ModelExists(f"{target} already exists; Triton versions are never overwritten "
                          "(leave --version out to take the next one)")
    staging = Path(tempfile.mkdtemp(prefix=f".{number}.", suffix=".part", dir=entry))
    try:
        shutil.copyfile(uint8_path, staging / "model.onnx")
        staging.chmod(0o755)
        try:
            os.rename(staging, target)  # replaces only an empty folder
        except OSError as exc:
            raise ModelExists(f"{target} appeared meanwhile; nothing written") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _next_version(entry: Path) -> int:
    numbers = [int(p.name) for p in entry.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]
    return max(numbers, default=0) + 1


def _ensure_config(path: Path, name: str, input_size: tuple[int, int]) -> None:
    if not path.exists():
        atomic_write_bytes(path, triton_config(name, input_size).encode())
        return
    found = _PLATFORM.search(path.read_text(encoding="utf-8", errors="replace"))
    if found is None or found.group(1) != PLATFORM:
        served = found.group(1) if found else "no platform"
        raise ModelError(f"{path} serves {served}, not {PLATFORM}: a model.onnx version would "
                         "not load there; give another --triton-repo or change the config")


def provenance_file(path: Path) -> dict[str, Any]:
    """The provenance object of ``path`` (JSON); ``ModelError`` naming the file otherwise."""
    try:
        data = json_limits.loads(path.read_bytes(), max_bytes=1 << 20)
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror})") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: provenance must be a JSON object")
    return data
