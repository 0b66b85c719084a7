"""A trained model, registered in the models folder, is a model like the built-in ones, by name.

Tiny U²-Net-shaped graphs (tests/modelkit.py) stand in for a trained u2netp: the same tensors at
32x32 (320x320 where the command line takes the size from the base, u2netp).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline import bootstrap, triton_launch
from pipeline.errors import InvalidField, ModelError, ModelExists
from pipeline.model_card import FORMAT, card_path
from pipeline.model_store import register, triton_version_folder
from pipeline.models import U2NETP, all_specs, get_spec, resolve, sha256_of, trained_names
from pipeline.settings import Settings
from tests.modelkit import u2net_like

NAME = "shoes-v1"
SIZE = (32, 32)
PROVENANCE = {"data": "sha256:abc", "steps": 3, "seed": 7, "curriculum": ["plain", "scene"]}


def graph(tmp_path: Path, *, seed: int = 0, size: tuple[int, int] = SIZE) -> Path:
    return u2net_like(tmp_path / f"trained-{seed}-{size[0]}.onnx", size, seed=seed)


def registered(folder: Path, source: Path, name: str = NAME, **kw: Any) -> Any:
    return register(folder, name, source, base="u2netp", provenance=PROVENANCE,
                    input_size=SIZE, sample_count=3, **kw)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with NAME registered, for the tests that only read it."""
    root = tmp_path_factory.mktemp("trained")
    registered(root / "models", graph(root))
    return root / "models"


@pytest.fixture
def folder(shared: Path, tmp_path: Path) -> Path:
    """A copy of ``shared`` this test may change."""
    return Path(shutil.copytree(shared, tmp_path / "models"))


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- by name -----------------------------------------------------------------------------------


def test_a_registered_model_resolves_by_name_and_runs_in_process(shared: Path) -> None:
    spec = get_spec(NAME, shared)
    assert (spec.base, spec.filename, spec.input_size) == ("u2netp", "shoes-v1.onnx", SIZE)
    assert spec.sha256 == sha256_of(shared / "shoes-v1.onnx")  # pinned from the card
    assert resolve(spec, shared) == shared / "shoes-v1.onnx"
    settings = Settings(models_dir=shared, model=NAME, segmenter="onnx")
    segmenter = bootstrap.segmenter(settings, model=NAME)
    image = np.zeros((1, *SIZE, 3), np.uint8)
    image[:, 8:24, 8:24] = (200, 40, 40)
    mask = segmenter.predict(image)
    assert mask.shape == (1, *SIZE) and 0.0 <= mask.min() <= mask.max() <= 1.0


def test_without_the_models_folder_a_trained_name_is_unknown(shared: Path) -> None:
    with pytest.raises(ModelError, match="unknown model 'shoes-v1'"):
        get_spec(NAME)


def test_registration_writes_the_card_last_and_the_uint8_graph_verified(shared: Path) -> None:
    assert names_in(shared) == ["shoes-v1.model.json", "shoes-v1.onnx", "shoes-v1.onnx.sha256",
                                "shoes-v1.uint8.onnx", "shoes-v1.uint8.onnx.sha256"]
    card = json.loads(card_path(shared, NAME).read_text())
    assert card["format"] == FORMAT and card["base"] == "u2netp"
    assert card["provenance"] == PROVENANCE and card["created"].endswith("+00:00")
    assert card["sha256"] == sha256_of(shared / "shoes-v1.onnx")
    assert (shared / "shoes-v1.onnx.sha256").read_text().split()[0] == card["sha256"]
    form = get_spec("shoes-v1-uint8", shared)
    assert (form.layout, form.derived_from, form.base) == ("uint8_nhwc", NAME, "u2netp")
    assert resolve(form, shared).name == "shoes-v1.uint8.onnx"  # against its sidecar


def test_a_trained_model_is_listed_after_the_built_in_ones(shared: Path) -> None:
    names = [s.name for s in all_specs(shared)]
    assert names[-2:] == ["shoes-v1", "shoes-v1-uint8"] and names[0] == "u2netp"
    assert trained_names(shared) == [NAME]


def test_the_dev_triton_serves_a_trained_model_under_its_own_name(shared: Path) -> None:
    settings = Settings(models_dir=shared, model=NAME, segmenter="triton")
    assert bootstrap.triton_name(settings, NAME) == NAME
    assert triton_launch.model_files(settings) == {NAME: shared / "shoes-v1.uint8.onnx"}


# -- what is refused --------------------------------------------------------------------------


def test_a_tampered_graph_is_refused_by_the_checksum_on_its_card(folder: Path) -> None:
    path = folder / "shoes-v1.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    (folder / "shoes-v1.onnx.sha256").write_text(f"{sha256_of(path)}  shoes-v1.onnx\n")
    with pytest.raises(ModelError, match=r"does not match its checksum.*models register"):
        resolve(get_spec(NAME, folder), folder)


def _card(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(card_path(folder, NAME).read_text())
    return data


@pytest.mark.parametrize(("change", "problem"), [
    (lambda c: "{not json", "not a model card"),
    (lambda c: [1, 2], "a JSON object"),
    (lambda c: {**c, "format": "clipline-model/9"}, "format must be 'clipline-model/1'"),
    (lambda c: {k: v for k, v in c.items() if k != "sha256"}, "missing sha256"),
    (lambda c: {**c, "colour": "red"}, "unknown colour"),
    (lambda c: {**c, "sha256": "ABC"}, "sha256 must be 64 lowercase hex digits"),
    (lambda c: {**c, "name": "other", "filename": "other.onnx"}, "names the model 'other'"),
    (lambda c: {**c, "name": "../x"}, "name '../x'"),
    (lambda c: {**c, "filename": "../u2netp.onnx"}, "filename must be 'shoes-v1.onnx'"),
    (lambda c: {**c, "input_size": [320, 0]}, "input_size"),
    (lambda c: {**c, "input_size": [True, 320]}, "input_size"),
    (lambda c: {**c, "normalisation": {"mean": [0, 0], "std": [1, 1, 1], "scale": "image_max"}},
     "normalisation.mean"),
    (lambda c: {**c, "normalisation": {**c["normalisation"], "std": [1, 0, 1]}},
     "std must be positive"),
    (lambda c: {**c, "provenance": "trust me"}, "provenance must be a JSON object"),
    (lambda c: {**c, "created": "2025-01-01T00:00:00"}, "UTC"),
    (lambda c: {**c, "output_index": -1}, "output_index"),
], ids=["not-json", "not-an-object", "format", "missing", "unknown-key", "sha256", "other-name",
        "path-name", "filename", "size", "bool-size", "mean", "std", "provenance", "naive-time",
        "output-index"])
def test_a_malformed_card_is_a_model_error_naming_the_file(
    folder: Path, change: Any, problem: str
) -> None:
    changed = change(_card(folder))
    text = changed if isinstance(changed, str) else json.dumps(changed)
    card_path(folder, NAME).write_text(text)
    with pytest.raises(ModelError) as info:
        get_spec(NAME, folder)
    assert str(card_path(folder, NAME)) in info.value.message and problem in info.value.message


@pytest.mark.parametrize("name", ["u2netp", "u2net", "isnet-general-use", "u2netp-uint8"])
def test_a_built_in_name_is_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelExists, match="built-in model"):
        registered(tmp_path / "models", graph(tmp_path), name=name)
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("name", ["Shoes", "../shoes", "a/b", "-shoes", "shoes-uint8",
                                  "shoes.uint8", "", "x" * 64])
def test_a_bad_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidField):
        registered(tmp_path / "models", graph(tmp_path), name=name)
    assert not (tmp_path / "models").exists()


def test_a_card_named_like_a_built_in_model_never_shadows_it(folder: Path) -> None:
    shutil.copy(card_path(folder, NAME), folder / "u2netp.model.json")
    assert get_spec("u2netp", folder) is U2NETP and trained_names(folder) == [NAME]


def test_an_unknown_or_uint8_base_is_refused(tmp_path: Path) -> None:
    source = graph(tmp_path)
    with pytest.raises(ModelError, match="unknown model 'u3netp'"):
        register(tmp_path / "m", NAME, source, base="u3netp", provenance={}, input_size=SIZE)
    with pytest.raises(ModelError, match="uint8 form"):
        register(tmp_path / "m", NAME, source, base="u2netp-uint8", provenance={},
                 input_size=SIZE)


def test_a_provenance_that_is_not_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="provenance must be a JSON object"):
        register(tmp_path / "m", NAME, graph(tmp_path), base="u2netp",
                 provenance={"when": object()}, input_size=SIZE)


def test_an_existing_name_is_refused_unless_replaced(folder: Path, tmp_path: Path) -> None:
    before = sha256_of(folder / "shoes-v1.onnx")
    newer = graph(tmp_path, seed=1)
    with pytest.raises(ModelExists, match=r"already registered.*replace"):
        registered(folder, newer)
    assert sha256_of(folder / "shoes-v1.onnx") == before
    result = registered(folder, newer, replace=True)
    assert result.replaced and result.sha256 == sha256_of(newer) != before
    assert get_spec(NAME, folder).sha256 == result.sha256
    resolve(get_spec("shoes-v1-uint8", folder), folder)
    assert not [n for n in names_in(folder) if n.startswith(".")]  # no staging left


def test_a_graph_that_is_not_the_spec_leaves_the_registered_model_as_it_was(
    folder: Path, tmp_path: Path
) -> None:
    before = {n: (folder / n).read_bytes() for n in names_in(folder)}
    wrong = graph(tmp_path, size=(16, 16))  # the card says 32x32
    with pytest.raises(ModelError):
        registered(folder, wrong, replace=True)
    assert {n: (folder / n).read_bytes() for n in names_in(folder)} == before
    with pytest.raises(ModelError):
        registered(folder, wrong, name="shoes-v2")
    assert names_in(folder) == sorted(before)  # nothing of shoes-v2, no staging folder


# -- settings ---------------------------------------------------------------------------------


def test_settings_accept_a_registered_model_from_the_environment(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPLINE_MODELS_DIR", str(shared))
    monkeypatch.setenv("CLIPLINE_SERVED_MODELS", f"u2netp,{NAME}")
    assert Settings().served == ("u2netp", NAME)
    monkeypatch.setenv("CLIPLINE_MODEL", NAME)
    assert Settings().served == (NAME, "u2netp")


def test_settings_find_registered_models_under_the_data_dir(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLIPLINE_MODELS_DIR", raising=False)
    monkeypatch.setenv("CLIPLINE_DATA_DIR", str(shared.parent))
    monkeypatch.setenv("CLIPLINE_SERVED_MODELS", NAME)
    monkeypatch.setenv("CLIPLINE_MODEL", NAME)
    assert Settings().served == (NAME,)


def test_settings_refuse_an_unregistered_model_saying_how_to_register_one(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPLINE_MODELS_DIR", str(shared))
    monkeypatch.setenv("CLIPLINE_SERVED_MODELS", "u2netp,shoes-v9")
    with pytest.raises(ValidationError) as info:
        Settings()
    error = info.value.errors()[0]
    assert error["loc"] == ("served_models",)
    assert "unknown model 'shoes-v9'; known models: u2netp" in error["msg"]
    assert "shoes-v1, shoes-v1-uint8" in error["msg"]
    assert "clipline models register ONNX --name NAME --base u2netp" in error["msg"]


# -- the Triton model repository ------------------------------------------------------------


def test_triton_versions_are_numbered_in_turn_and_never_overwritten(
    shared: Path, tmp_path: Path
) -> None:
    repo, uint8 = tmp_path / "repo", shared / "shoes-v1.uint8.onnx"
    first = triton_version_folder(repo, NAME, uint8, input_size=SIZE)
    assert first == repo / NAME / "1"
    assert (first / "model.onnx").read_bytes() == uint8.read_bytes()
    config = (repo / NAME / "config.pbtxt").read_text()
    assert 'name: "shoes-v1"' in config and 'platform: "onnxruntime_onnx"' in config
    assert "dims: [ 32, 32, 3 ]" in config and "dims: [ 32, 32 ]" in config
    assert triton_version_folder(repo, NAME, uint8, input_size=SIZE).name == "2"
    assert triton_version_folder(repo, NAME, uint8, 7, input_size=SIZE).name == "7"
    assert triton_version_folder(repo, NAME, uint8, input_size=SIZE).name == "8"
    (repo / NAME / "2" / "model.onnx").write_bytes(b"kept")
    with pytest.raises(ModelExists, match="never overwritten"):
        triton_version_folder(repo, NAME, uint8, 2, input_size=SIZE)
    assert (repo / NAME / "2" / "model.onnx").read_bytes() == b"kept"
    assert sorted(p.name for p in (repo / NAME).iterdir()) == ["1", "2", "7", "8",
                                                                "config.pbtxt"]


def test_a_triton_entry_of_another_platform_is_refused(shared: Path, tmp_path: Path) -> None:
    entry = tmp_path / "repo" / NAME
    entry.mkdir(parents=True)
    (entry / "config.pbtxt").write_text('name: "shoes-v1"\nplatform: "tensorrt_plan"\n')
    with pytest.raises(ModelError, match="serves tensorrt_plan"):
        triton_version_folder(tmp_path / "repo", NAME, shared / "shoes-v1.uint8.onnx")
    assert sorted(p.name for p in entry.iterdir()) == ["config.pbtxt"]


# -- the command line -------------------------------------------------------------------------


def clipline(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *args: str) -> tuple[int, str, str]:
    from clipline.cli import main

    monkeypatch.setattr(sys, "argv", ["clipline", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_cli_list_shows_a_trained_model_with_its_base_and_a_bad_card(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "broken.model.json").write_text("{")
    code, out, _ = clipline(monkeypatch, capsys, "models", "list", "--models-dir", str(folder))
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("shoes-v1 "))
    assert "32x32" in row and "verified" in row and "(trained from u2netp)" in row
    assert any(line.startswith("shoes-v1-uint8 ") and "verified" in line
               for line in out.splitlines())
    assert any(line.startswith("broken ") and "BAD CARD" in line for line in out.splitlines())


def test_cli_register_records_provenance_and_publishes_to_triton(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = u2net_like(tmp_path / "big.onnx", U2NETP.input_size)  # u2netp's size, tiny weights
    provenance = tmp_path / "provenance.json"
    provenance.write_text(json.dumps(PROVENANCE))
    models, repo = tmp_path / "models", tmp_path / "repo"
    argv = ["models", "register", str(source), "--name", NAME, "--base", "u2netp",
            "--provenance", str(provenance), "--triton-repo", str(repo),
            "--models-dir", str(models)]
    code, out, err = clipline(monkeypatch, capsys, *argv)
    assert code == 0, err
    assert f"{NAME}: registered in {models} (trained from u2netp)" in out
    assert f"triton: {repo / NAME / '1' / 'model.onnx'}" in out
    assert _card(models)["provenance"] == PROVENANCE
    assert get_spec(NAME, models).input_size == U2NETP.input_size
    code, _, err = clipline(monkeypatch, capsys, *argv)
    assert code == 2 and "clipline: model_exists: " in err and "--replace" in err
    code, out, _ = clipline(monkeypatch, capsys, *argv, "--replace")
    assert code == 0 and f"{NAME}: replaced" in out and (repo / NAME / "2").is_dir()


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "u2net"], "model_exists: 'u2net' is a built-in model"),
    (["--name", "Shoes"], "invalid_field: name: a trained model's name is"),
    (["--name", NAME, "--provenance", "{}"], "Invalid value"),
], ids=["built-in", "bad-name", "missing-provenance-file"])
def test_cli_register_errors_are_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], message: str,
) -> None:
    source = graph(tmp_path)
    code, _, err = clipline(monkeypatch, capsys, "models", "register", str(source), "--base",
                            "u2netp", "--models-dir", str(tmp_path / "m"), *args)
    assert code == 2 and message in err


def test_cli_register_help_explains_the_tensors_and_the_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = clipline(monkeypatch, capsys, "models", "register", "--help")
    assert code == 0
    for words in ("input.1", "sigmoid", "--provenance", "--replace", "--triton-repo",
                  "clipline run --model NAME", "CLIPLINE_SERVED_MODELS"):
        assert words in " ".join(out.split()), words
