"""clipline train and export: the torch module is the released model, training lowers the loss,
a killed run resumes where it was, export round-trips, and the gate refuses a worse model.

Runs the real u2netp (the session's ``models_dir``) on synthetic sources that the tests write
(``pipeline.quality.synthetic``), so no data set is needed; small batches keep it to seconds
per step on two cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clipline.cli.train import GateRefused, _gate
from pipeline.models import U2NETP
from pipeline.quality.synthetic import write_sources
from tests.modelkit import u2net_like
from training import checkpoint
from training.curriculum import Curriculum, Stage
from training.data import Sources, TrainStream
from training.export import export_onnx, model_from_checkpoint
from training.losses import side_bce, side_bce_iou, soft_iou
from training.u2net import (
    ENCODER,
    U2Net,
    WeightMismatch,
    blend,
    check_against_onnx,
    from_onnx,
    load_onnx_weights,
    trainable,
)

ROOT = Path(__file__).resolve().parents[2]
CURRICULUM = """
patience = 2
[[stage]]
name = "plain"
share = 1
augment = 0.2
mix = { product-plain = 1 }
[[stage]]
name = "busy"
share = 1
augment = 1.0
mix = { product-plain = 1, product-scene = 1, illustration = 1, multi = 1 }
"""


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sources")
    write_sources(root, seed=3)
    return root


@pytest.fixture
def models(tmp_path: Path, models_dir: Path) -> Path:
    """A private models folder holding the released u2netp (a link: nothing is copied)."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / U2NETP.filename).symlink_to(models_dir / U2NETP.filename)
    return folder


def _released(models_dir: Path) -> U2Net:
    return from_onnx(models_dir / U2NETP.filename, "u2netp")


def test_the_torch_module_equals_onnx_runtime_on_the_released_weights(models_dir: Path) -> None:
    inputs = np.random.default_rng(0).normal(size=(2, 3, 320, 320)).astype(np.float32)
    agreement = check_against_onnx(_released(models_dir), models_dir / U2NETP.filename, inputs)
    assert agreement.max_abs < 1e-4 and agreement.images == 2


def test_a_graph_of_another_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightMismatch, match="convolutions"):
        load_onnx_weights(U2Net("u2netp"), u2net_like(tmp_path / "tiny.onnx"))


def test_a_few_steps_lower_the_loss_on_the_batch_they_learn(models_dir: Path,
                                                             sources: Path) -> None:
    torch.manual_seed(0)
    stream = TrainStream(_sources(sources), seed=0, size=(96, 96))
    batch = stream.batch({"product-plain": 1, "multi": 1}, 4, 0.5)
    images, alpha = torch.from_numpy(batch.images), torch.from_numpy(batch.alpha)
    model = _released(models_dir).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(8):
        loss = side_bce(model(images, logits=True), alpha)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def _sources(root: Path) -> Sources:
    return Sources(objects={"photo": root / "objects" / "photo",
                            "clipart": root / "objects" / "clipart"},
                   backgrounds={"photo": root / "backgrounds" / "photo"})


def _train_cmd(out: Path, sources: Path, curriculum: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "clipline", "train", "--out", str(out),
            "--objects", f"photo={sources / 'objects' / 'photo'}",
            "--objects", f"clipart={sources / 'objects' / 'clipart'}",
            "--backgrounds", f"photo={sources / 'backgrounds' / 'photo'}",
            "--curriculum", str(curriculum), "--steps", str(steps), "--batch-size", "2",
            "--val-every", "2", "--checkpoint-every", "2", "--lr", "1e-4", "--threads", "2"]


def _env(models: Path) -> dict[str, str]:
    return {**os.environ, "CLIPLINE_MODELS_DIR": str(models), "CLIPLINE_MODEL": "u2netp"}


def _log(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_run_resumes_from_its_checkpoint_in_the_same_stage(
        tmp_path: Path, sources: Path, models: Path) -> None:
    curriculum = tmp_path / "curriculum.toml"
    curriculum.write_text(CURRICULUM)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = _env(models)
    subprocess.run(_train_cmd(whole, sources, curriculum, 8), env=env, check=True,
                   capture_output=True, timeout=400)

    proc = subprocess.Popen(_train_cmd(killed, sources, curriculum, 8), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill it after its second checkpoint (step 4)
        log = killed / "log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    at = int(checkpoint.load(killed / checkpoint.NAME)["progress"]["step"])
    assert 2 <= at < 8

    again = subprocess.run(_train_cmd(killed, sources, curriculum, 8), env=env, check=True,
                           capture_output=True, text=True, timeout=400)
    assert f"resumed at step {at}" in again.stderr
    rows = _log(killed)
    resumed = rows[-(8 - at):]
    assert [r["step"] for r in resumed] == list(range(at + 1, 9))
    # Same stages at the same steps, the same data and so the same weights as the run that
    # was never killed.
    whole_rows = _log(whole)
    assert [r["stage"] for r in resumed] == [r["stage"] for r in whole_rows[at:]]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in whole_rows[at:]],
                                                         rel=1e-4)
    a = checkpoint.load(whole / checkpoint.NAME)["model"]
    b = checkpoint.load(killed / checkpoint.NAME)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    summary = json.loads((killed / "train.json").read_text())
    assert summary["resumed_at"] == at
    assert [s["stage"] for s in summary["progress"]["ended"]] == ["plain", "busy"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_then_export_registers_a_model_whose_onnx_equals_torch(
        tmp_path: Path, sources: Path, models: Path) -> None:
    curriculum = tmp_path / "curriculum.toml"
    curriculum.write_text(CURRICULUM)
    out = tmp_path / "run"
    env = _env(models)
    subprocess.run(_train_cmd(out, sources, curriculum, 2), env=env, check=True,
                   capture_output=True, timeout=400)
    done = subprocess.run([sys.executable, "-m", "clipline", "models", "export",
                           str(out / checkpoint.NAME), "--name", "u2netp-test"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    card = json.loads((models / "u2netp-test.model.json").read_text())
    assert card["base"] == "u2netp"
    assert card["provenance"]["steps"] == 2
    assert card["provenance"]["data_fingerprint"] == TrainStream(_sources(sources), seed=0
                                                                 ).fingerprint()
    assert (models / "u2netp-test.uint8.onnx").exists()

    model, _ = model_from_checkpoint(out / checkpoint.NAME)
    inputs = np.random.default_rng(5).normal(size=(2, 3, 320, 320)).astype(np.float32)
    # The registered file itself, run by ONNX Runtime, gives the trained module's masks...
    assert check_against_onnx(model, models / "u2netp-test.onnx", inputs).max_abs < 1e-4
    # ...and training changed the model: the released weights do not.
    with pytest.raises(WeightMismatch):
        check_against_onnx(_released(models), models / "u2netp-test.onnx", inputs,
                           tolerance=1e-5)
    again = subprocess.run([sys.executable, "-m", "clipline", "models", "export",
                            str(out / checkpoint.NAME), "--name", "u2netp-test"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already registered" in again.stderr
    # --blend registers base + w x (trained - base), the base read from the models folder.
    half = subprocess.run([sys.executable, "-m", "clipline", "models", "export",
                           str(out / checkpoint.NAME), "--name", "u2netp-half", "--blend", "0.5"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert half.returncode == 0, half.stderr
    card = json.loads((models / "u2netp-half.model.json").read_text())
    assert card["provenance"]["blend"] == {"weight": 0.5, "with": "u2netp"}
    blended = blend(model, _released(models), 0.5)
    assert check_against_onnx(blended, models / "u2netp-half.onnx", inputs).max_abs < 1e-4


def test_export_checks_onnx_against_torch(tmp_path: Path, models_dir: Path) -> None:
    model = _released(models_dir)
    agreement = export_onnx(model, tmp_path / "m.onnx", samples=1)
    assert agreement.max_abs < 1e-4


def test_a_curriculum_asking_for_a_class_the_data_cannot_make_is_refused() -> None:
    from training.curriculum import InvalidCurriculum

    curriculum = Curriculum((Stage("a", {"people": 1.0}, 0.5, 1.0),))
    with pytest.raises(InvalidCurriculum, match="people"):
        curriculum.check({"product-plain", "multi"})


# -- the gate -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory: pytest.TempPathFactory, sources: Path) -> Path:
    """A held-out composite set from the eval side of the synthetic sources."""
    out = tmp_path_factory.mktemp("eval") / "composites"
    subprocess.run([sys.executable, "-m", "clipline", "datasets", "compose", str(out),
                    "--split", "eval", "--per-class", "2", "--seed", "1", "--size", "192",
                    "--eval-share", "0.5",
                    "--objects", f"photo={sources / 'objects' / 'photo'}",
                    "--objects", f"clipart={sources / 'objects' / 'clipart'}",
                    "--backgrounds", f"photo={sources / 'backgrounds' / 'photo'}"],
                   check=True, capture_output=True, timeout=120)
    return out


def _checkpoint_of(model: U2Net, path: Path) -> Path:
    checkpoint.save(path, {"variant": model.variant, "base": "u2netp",
                           "model": model.state_dict(), "provenance": {"base": "u2netp"}})
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_gate_refuses_a_damaged_model_and_passes_the_released_one(
        tmp_path: Path, models: Path, eval_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPLINE_MODELS_DIR", str(models))
    monkeypatch.setenv("CLIPLINE_MODEL", "u2netp")
    base_onnx = models / U2NETP.filename
    damaged = _released(models)
    with torch.no_grad():  # the fused mask inverted: background kept, subject dropped
        damaged.outconv.weight.neg_()
        damaged.outconv.bias.neg_()
    bad = _checkpoint_of(damaged, tmp_path / "bad.pt")
    with pytest.raises(GateRefused, match="u2netp-broken"):
        _gate(bad, "u2netp-broken", "u2netp", base_onnx, 1.0, [eval_set], None, 0.005,
              tmp_path / "run-bad")
    assert not (models / "u2netp-broken.model.json").exists()
    report = json.loads((tmp_path / "run-bad" / "gate" / "candidate" / "report.json")
                        .read_text())
    assert report["overall"]["iou"] < 0.5

    same = _checkpoint_of(_released(models), tmp_path / "same.pt")
    baseline = tmp_path / "run-bad" / "gate" / "base" / "report.json"
    verdict = _gate(same, "u2netp-same", "u2netp", base_onnx, 1.0, [eval_set], baseline, 0.005,
                    tmp_path / "run-same")
    assert verdict["passed"]
    shutil.rmtree(tmp_path / "run-same" / "gate" / "models")


# -- refusals: one line, exit status 2, nothing trained or written --------------------------


def _clipline(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clipline", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _data_args(sources: Path) -> list[str]:
    return ["--objects", f"photo={sources / 'objects' / 'photo'}",
            "--objects", f"clipart={sources / 'objects' / 'clipart'}",
            "--backgrounds", f"photo={sources / 'backgrounds' / 'photo'}"]


@pytest.mark.parametrize("extra, message", [
    (["--name", "u2netp"], "built-in model"),
    (["--name", "a/b"], "invalid_field"),
    (["--device", "cuda:7"], "invalid_device"),
    (["--steps", "2"], "--steps 4 or more"),
    (["--objects", "foto=/tmp"], "unknown kind foto"),
    (["--gate", "--name", "x1"], "--gate needs"),
    (["--loss", "focal"], "choose bce or bce+iou"),
    (["--tune", "encoder"], "choose all or decoder"),
])
def test_train_refuses_before_any_work(tmp_path: Path, sources: Path, models: Path,
                                       extra: list[str], message: str) -> None:
    out = tmp_path / "run"
    done = _clipline(["train", "--out", str(out), *_data_args(sources), *extra], _env(models))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("content, suffix, message", [
    (b"hello", ".pt", "not a clipline train checkpoint"),
    (b"\x08\x07onnx-ish", ".onnx", "clipline models register"),
])
def test_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path, models: Path,
                                                        content: bytes, suffix: str,
                                                        message: str) -> None:
    path = tmp_path / f"file{suffix}"
    path.write_bytes(content)
    done = _clipline(["models", "export", str(path), "--name", "mine"], _env(models))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "weights_only" not in done.stderr
    assert not (models / "mine.model.json").exists()


def test_export_refuses_a_malformed_name_before_reading_anything(tmp_path: Path,
                                                                 models: Path) -> None:
    path = tmp_path / "c.pt"
    path.write_bytes(b"x")
    done = _clipline(["models", "export", str(path), "--name", "a/b"], _env(models))
    assert done.returncode == 2 and "invalid_field" in done.stderr, done.stderr


def test_tuning_the_decoder_leaves_the_encoder_as_released(models_dir: Path,
                                                           sources: Path) -> None:
    torch.manual_seed(0)
    batch = TrainStream(_sources(sources), seed=0, size=(96, 96)).batch(
        {"product-plain": 1, "multi": 1}, 2, 0.5)
    model = _released(models_dir).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.Adam(trainable(model, "decoder"), lr=1e-3)
    loss = side_bce(model(torch.from_numpy(batch.images), logits=True),
                    torch.from_numpy(batch.alpha))
    loss.backward()
    optimiser.step()
    changed = {k.split(".")[1] if k.startswith("stages.") else k.split(".")[0]
               for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and not changed & set(ENCODER), changed
    assert {"stage1d", "sides", "outconv"} <= changed
    assert all(p.requires_grad for p in trainable(model, "all"))
    with pytest.raises(ValueError, match="unknown part"):
        trainable(model, "encoder")


def test_blend_moves_every_weight_between_base_and_tuned(models_dir: Path) -> None:
    base = _released(models_dir)
    tuned = _released(models_dir)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    tuned_state = {k: v.clone() for k, v in tuned.state_dict().items()}
    blend(tuned, base, 0.25)
    for key, value in tuned.state_dict().items():
        expected = base.state_dict()[key] + 0.25 * (tuned_state[key] - base.state_dict()[key])
        assert torch.allclose(value, expected, atol=1e-7), key
    blend(tuned, base, 0.0)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in tuned.state_dict().items())
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        blend(tuned, base, 1.5)
    with pytest.raises(ValueError, match="cannot blend"):
        blend(U2Net("u2net"), base, 0.5)


def test_the_iou_term_charges_for_a_subject_turned_down() -> None:
    alpha = torch.zeros(1, 1, 32, 32)
    alpha[..., 8:16, 8:16] = 1.0  # a subject on 1/16 of the frame
    sure = torch.where(alpha > 0, 8.0, -8.0)
    assert float(soft_iou(sure, alpha)) < 0.01
    assert float(soft_iou(torch.full_like(alpha, -8.0), alpha)) > 0.98
    faded = torch.where(alpha > 0, -0.4, -8.0)  # the subject at p = 0.4
    # BCE barely sees it (most pixels are right); the IoU term does.
    bce = float(side_bce([faded] * 7, alpha)) - float(side_bce([sure] * 7, alpha))
    hybrid = float(side_bce_iou([faded] * 7, alpha)) - float(side_bce_iou([sure] * 7, alpha))
    assert hybrid > 2 * bce > 0
