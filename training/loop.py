"""The training run: released weights in, a fine-tuned model and its record out.

:func:`train` loads the base model from its released ONNX into :class:`training.u2net.U2Net`,
proves the torch forward equal to ONNX Runtime's (:func:`training.u2net.check_against_onnx`)
before any step, then follows the curriculum: each step draws a batch whose classes follow the
stage's mix (:class:`training.data.TrainStream`), takes the authors' seven-output BCE
(:func:`training.losses.side_bce`, or with ``loss="bce+iou"``
:func:`training.losses.side_bce_iou`), plus, with a teacher, the same loss against the teacher's
masks on real unlabelled photos. ``tune="decoder"`` trains the decoder and the side outputs
only (:func:`training.u2net.trainable`). Validation (the fused output's BCE on composites of the
stage's mix made from the train side's files with another seed, never the evaluation side)
decides when a stage has flattened. Adam (Kingma and Ba 2015), constant learning rate.

Writes into the run folder ``RUN``: ``checkpoint.pt`` (every ``checkpoint_every`` steps, at
each stage's end and at the end; :mod:`training.checkpoint`), ``log.jsonl`` (one line per
step: stage, losses, seconds) and ``train.json`` (settings, stages and why each ended, time).
Starting again with the same settings continues from the checkpoint, in the same stage and on
the same data stream. Runs on CPU or, with ``device="cuda"``, on a GPU: the same code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import UsageError
from pipeline.quality.evaluate import code_version
from training import checkpoint
from training.curriculum import DEFAULT, Curriculum, Progress
from training.data import Sources, TrainStream
from training.losses import LOSSES, fused_bce, teacher_bce
from training.u2net import (
    TUNE_PARTS,
    Agreement,
    U2Net,
    check_against_onnx,
    from_onnx,
    trainable,
)

VAL_SEED_OFFSET = 7919  # validation composites: the train side's files, another seed
Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    """One run. ``base_onnx``: the released model's file (verified by the caller);
    ``teacher_onnx``: a larger model whose masks on ``sources.photos`` the student learns too
    (None: no teacher term)."""

    out: Path
    base: str
    base_onnx: Path
    sources: Sources
    curriculum: Curriculum = DEFAULT
    steps: int = 300
    batch_size: int = 8
    lr: float = 3e-5
    seed: int = 0
    val_every: int = 25
    val_size: int = 16
    checkpoint_every: int = 25
    device: str = "cpu"
    threads: int = 0
    teacher: str | None = None
    teacher_onnx: Path | None = None
    teacher_weight: float = 0.5
    teacher_batch: int = 4
    tune: str = "all"
    loss: str = "bce"
    extra: dict[str, Any] = field(default_factory=dict)

    def fixed(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        return {"base": self.base, "steps": self.steps, "batch_size": self.batch_size,
                "lr": self.lr, "seed": self.seed, "val_every": self.val_every,
                "val_size": self.val_size, "curriculum": self.curriculum.to_dict(),
                "teacher": self.teacher, "teacher_weight": self.teacher_weight,
                "teacher_batch": self.teacher_batch, "tune": self.tune,
                "loss": self.loss,
                "sources": {"objects": {k: str(v) for k, v in self.sources.objects.items()},
                            "backgrounds": {k: str(v)
                                            for k, v in self.sources.backgrounds.items()},
                            "pairs": [str(p) for p in self.sources.pairs],
                            "photos": [str(p) for p in self.sources.photos]}}


@dataclass(frozen=True)
class RunResult:
    checkpoint: Path
    steps: int
    seconds: float
    resumed_at: int | None
    agreement: Agreement | None
    stages: list[dict[str, Any]]


def variant_of(base: str) -> str:
    """The architecture of a base model: u2net for u2net, u2netp for the rest."""
    return "u2net" if base == "u2net" else "u2netp"


def train(config: TrainConfig, report: Report | None = None) -> RunResult:
    """Run (or continue) ``config``; see the module docstring. Raises ``UsageError`` subclasses
    for bad data, curriculum or checkpoint, and ``WeightMismatch`` when the base model's torch
    form does not reproduce ONNX Runtime's masks."""
    report = report or (lambda _event: None)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = _device(config.device)
    ckpt_path = config.out / checkpoint.NAME
    stream = TrainStream(config.sources, seed=config.seed)
    _check(config, stream)
    config.out.mkdir(parents=True, exist_ok=True)
    model = from_onnx(config.base_onnx, variant_of(config.base))
    agreement: Agreement | None = None
    verified: dict[str, Any] | None = None  # the check before the first step, kept on resume
    progress = Progress(config.curriculum, config.steps)
    trained_seconds, resumed_at = 0.0, None
    saved = checkpoint.load(ckpt_path) if ckpt_path.exists() else None
    if saved is not None:
        checkpoint.check_same_config(saved["config"], config.fixed(), ckpt_path)
        model.load_state_dict(saved["model"])
        progress = Progress.from_dict(config.curriculum, saved["progress"])
        stream.restore(saved["stream"])
        trained_seconds = float(saved["provenance"]["seconds"])
        verified = saved["provenance"].get("base_vs_onnx")
        resumed_at = progress.step
        report({"event": "resumed", "step": progress.step, "stage": _stage_name(progress)})
    else:
        probe = np.random.default_rng(config.seed).normal(size=(2, 3, 320, 320))
        agreement = check_against_onnx(model, config.base_onnx, probe.astype(np.float32))
        report({"event": "verified", "max_abs": agreement.max_abs})
        verified = agreement.__dict__
    model.to(device)
    optimiser = torch.optim.Adam(trainable(model, config.tune), lr=config.lr)
    if saved is not None:
        optimiser.load_state_dict(saved["optimiser"])
    teacher = _Teacher(config.teacher_onnx) if config.teacher_onnx else None
    log = (config.out / "log.jsonl").open("a", encoding="utf-8")
    val_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def save() -> None:
        checkpoint.save(ckpt_path, {
            "variant": model.variant, "base": config.base, "model": model.state_dict(),
            "optimiser": optimiser.state_dict(), "progress": progress.to_dict(),
            "stream": stream.state(), "config": config.fixed(),
            "provenance": {**_provenance(config, stream, progress,
                                         trained_seconds + time.monotonic() - started),
                           "base_vs_onnx": verified}})

    started = time.monotonic()
    try:
        model.train()
        while not progress.done:
            stage = progress.stage
            t0 = time.monotonic()
            batch = stream.batch_for(stage, config.batch_size)
            images = torch.from_numpy(batch.images).to(device)
            alpha = torch.from_numpy(batch.alpha).to(device)
            loss = LOSSES[config.loss](model(images, logits=True), alpha)
            row: dict[str, Any] = {"step": progress.step + 1, "stage": stage.name,
                                   "loss": float(loss.detach())}
            if teacher is not None:
                photos = stream.photos_batch(config.teacher_batch)
                target = torch.from_numpy(teacher(photos)).to(device)
                t_loss = teacher_bce(model(torch.from_numpy(photos).to(device), logits=True),
                                     target)
                row["teacher_loss"] = float(t_loss.detach())
                loss = loss + config.teacher_weight * t_loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            row["seconds"] = round(time.monotonic() - t0, 3)
            last = progress.stage_step + 1 == config.curriculum.budgets(config.steps)[
                progress.stage_index]
            if (progress.step + 1) % config.val_every == 0 or last:
                row["val_loss"] = _validate(model, config, stage, val_cache, device)
            ended = progress.step_done(row.get("val_loss"))
            if ended:
                row["stage_ended"] = ended
            log.write(json.dumps(row) + "\n")
            log.flush()
            report({"event": "step", **row, "of": config.steps})
            if ended or progress.step % config.checkpoint_every == 0 or progress.done:
                save()
    finally:
        log.close()
    seconds = trained_seconds + time.monotonic() - started
    summary = {"config": config.fixed(), "progress": progress.to_dict(), "seconds": seconds,
               "base_vs_onnx": verified,
               "resumed_at": resumed_at, "code_version": code_version()}
    (config.out / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return RunResult(ckpt_path, progress.step, seconds, resumed_at, agreement, progress.ended)


class InvalidDevice(UsageError):
    """A --device torch cannot use here."""

    reason = "invalid_device"


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise InvalidDevice(f"device {name!r}: not a torch device (cpu, cuda, cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidDevice(f"device {name!r}: torch {torch.__version__} sees no CUDA GPU here; "
                            "use --device cpu (or install torch's CUDA build on a GPU machine)")
    if device.type not in ("cpu", "cuda"):
        raise InvalidDevice(f"device {name!r}: only cpu and cuda are supported")
    return device


def _check(config: TrainConfig, stream: TrainStream) -> None:
    """Refuse, before any work, what this run cannot do (``UsageError`` subclasses)."""
    config.curriculum.check(set(stream.classes) | ({"pairs"} if config.sources.pairs else set()))
    config.curriculum.check_steps(config.steps)
    if config.loss not in LOSSES:
        raise UsageError(f"loss {config.loss!r}: choose {' or '.join(LOSSES)}")
    if config.tune not in TUNE_PARTS:
        raise UsageError(f"tune {config.tune!r}: choose {' or '.join(TUNE_PARTS)}")


def _stage_name(progress: Progress) -> str:
    return progress.stage.name if not progress.done else "done"


def _validate(model: U2Net, config: TrainConfig, stage: Any,
              cache: dict[str, tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    """Fused-output BCE on a fixed set of the stage's mix (made once per stage)."""
    if stage.name not in cache:
        val = TrainStream(config.sources, seed=config.seed + VAL_SEED_OFFSET)
        batch = val.batch(stage.mix, config.val_size, 0.0)
        cache[stage.name] = (torch.from_numpy(batch.images), torch.from_numpy(batch.alpha))
    images, alpha = cache[stage.name]
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(images), config.batch_size):
            logits = model(images[i:i + config.batch_size].to(device), logits=True)
            part = alpha[i:i + config.batch_size].to(device)
            total += float(fused_bce(logits, part)) * len(part)
    model.train()
    return round(total / len(images), 6)


def _provenance(config: TrainConfig, stream: TrainStream, progress: Progress,
                seconds: float) -> dict[str, Any]:
    return {"base": config.base, "data_fingerprint": stream.fingerprint(),
            "curriculum": config.curriculum.to_dict(), "stages": progress.ended,
            "steps": progress.step, "batch_size": config.batch_size, "lr": config.lr,
            "seed": config.seed, "tune": config.tune, "loss": config.loss,
            "teacher": config.teacher,
            "teacher_weight": config.teacher_weight if config.teacher else None,
            "device": config.device, "seconds": round(seconds, 1),
            "code_version": code_version(), **config.extra}


class _Teacher:
    """The teacher's fused mask (probabilities, before any min-max) via ONNX Runtime."""

    def __init__(self, onnx_path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = [self.session.run(None, {self.input: images[i:i + 1]})[0]
               for i in range(len(images))]
        return np.concatenate(out).astype(np.float32)
