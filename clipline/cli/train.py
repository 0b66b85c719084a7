"""``clipline train``: fine-tune a released model on composites, then (optionally) gate and
register it. torch is imported only once a run starts: ``clipline --help`` and every other
command stay free of it (the ``train`` extra: ``pip install 'clipline[train]'``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from clipline.cli.datasets import _sources
from pipeline.errors import UsageError
from pipeline.model_store import check_new_name
from pipeline.models import get_spec, resolve
from pipeline.quality.composer import RECIPES
from pipeline.quality.gate import DEFAULT_MAX_DROP
from pipeline.settings import Settings

console = Console(stderr=True, soft_wrap=True)


class TrainingUnavailable(UsageError):
    """torch is not installed: training needs the ``train`` extra."""

    reason = "training_unavailable"


class GateRefused(UsageError):
    """The trained model is worse than its base in some class: it was not registered."""

    reason = "gate_refused"


def train(
    out: Path = typer.Option(..., "--out", file_okay=False, resolve_path=True,
                             help="Run folder: checkpoint.pt, log.jsonl, train.json, gate/. "
                             "Running again with the same options continues from the "
                             "checkpoint."),
    objects: list[str] = typer.Option(..., "--objects", metavar="KIND=DIR", help="Cut-outs "
                                      "with alpha (photo, clipart, people), as for `clipline "
                                      "datasets compose`; only their train side is used."),
    backgrounds: list[str] | None = typer.Option(None, "--backgrounds", metavar="KIND=DIR",
                                                 help="Background photos (photo=DIR)."),
    pairs: list[Path] | None = typer.Option(None, "--pairs", exists=True, file_okay=False,
                                            metavar="DIR",
                                            help="A folder of real photo/mask pairs "
                                            "(images/, masks/<stem>.png), class 'pairs'."),
    photos: list[Path] | None = typer.Option(None, "--photos", exists=True, file_okay=False,
                                             metavar="DIR",
                                             help="Unlabelled real photos for the teacher term "
                                             "(train side only). Never an evaluation set."),
    base: str = typer.Option("u2netp", help="Released model to start from (its ONNX must be "
                             "pulled: `clipline models pull NAME`)."),
    teacher: str | None = typer.Option(None, help="A larger model (u2net) whose masks on "
                                       "--photos the student also learns."),
    teacher_weight: float = typer.Option(0.5, min=0.0, help="Weight of the teacher term."),
    teacher_batch: int = typer.Option(4, min=1, max=256, help="Photos per step for the "
                                      "teacher term."),
    steps: int = typer.Option(300, min=1, help="Training steps over the whole curriculum, "
                              "shared by the stages' shares (at least one per stage)."),
    batch_size: int = typer.Option(8, min=1, max=256, help="Composites per step."),
    lr: float = typer.Option(5e-5, min=0.0, help="Adam's learning rate (1e-3, the authors' "
                             "from-scratch rate, diverges on the released weights)."),
    seed: int = typer.Option(0, help="Seed of the data stream and of torch."),
    tune: str = typer.Option("all", help="What trains: all, or decoder (the encoder's "
                             "stages frozen: less forgetting of real photos, faster steps)."),
    loss: str = typer.Option("bce", help="bce: the U2-Net authors' BCE over the seven "
                             "outputs; bce+iou: plus a soft IoU term per output (BASNet's "
                             "hybrid loss), which keeps subjects from fading."),
    blend: float = typer.Option(1.0, min=0.0, max=1.0, help="Register base + BLEND x "
                                "(trained - base) instead of the trained weights (WiSE-FT; "
                                "0.5 is its default): keeps more of the base on pictures "
                                "unlike the composites. 1: the trained weights as they are."),
    curriculum: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                           help="A TOML curriculum (see docs/TRAINING.md); "
                                           "default: plain → scenes → illustrations → busy."),
    val_every: int = typer.Option(25, min=1, help="Steps between validations."),
    checkpoint_every: int = typer.Option(25, min=1, help="Steps between checkpoints."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N: same code on either."),
    threads: int = typer.Option(0, min=0, help="torch CPU threads (0: torch's default)."),
    name: str | None = typer.Option(None, help="Register the result under this name."),
    gate: bool = typer.Option(False, "--gate", help="Before registering: run `clipline eval` "
                              "of the result against the base on --eval-set and refuse a "
                              "model worse in any class by more than --max-drop."),
    eval_sets: list[Path] | None = typer.Option(None, "--eval-set", exists=True,
                                                file_okay=False, resolve_path=True,
                                                metavar="SET",
                                                help="Held-out sets for --gate (davis-dev, "
                                                "composites of --split eval)."),
    baseline: Path | None = typer.Option(None, exists=True, dir_okay=False, resolve_path=True,
                                         help="The base model's report.json on the same "
                                         "sets (default: evaluated now, into OUT/gate/base)."),
    max_drop: float = typer.Option(DEFAULT_MAX_DROP, min=0.0, help="Gate: largest worsening "
                                   "of a class mean allowed, per metric."),
    replace: bool = typer.Option(False, "--replace", help="Replace a model of that name."),
) -> None:
    """Fine-tune a released segmentation model on composites made on the fly, simple to hard.

    Data: --objects cut-outs on --backgrounds photos and studio sweeps, by the composer of
    `clipline datasets compose` (train side of every folder; evaluation composites use the
    other side), classes balanced in every batch as the curriculum's stage says, with colour,
    flip, noise and JPEG augmentation. Starts from the released weights (--base), checked
    against ONNX Runtime before the first step; the loss is the U2-Net authors' BCE over the
    seven outputs, plus --teacher's masks on --photos when given.

    With --name the result is exported to ONNX (checked against torch), registered in the
    models folder with its provenance and a uint8 graph for Triton, and usable by name:
    `clipline run --model NAME`, CLIPLINE_SERVED_MODELS, `clipline eval --model NAME`.
    With --gate it is registered only if `clipline eval` on --eval-set finds no class worse
    than the base's (otherwise exit status 2, nothing registered); the report and sheets are
    kept in OUT/gate and beside the model (NAME.gate/).
    """
    if gate and (not name or not eval_sets):
        raise UsageError("--gate needs --name and at least one --eval-set")
    if teacher and not photos:
        raise UsageError("--teacher needs --photos (unlabelled real photos)")
    try:
        from training.curriculum import DEFAULT
        from training.curriculum import load as load_curriculum
        from training.data import Sources
        from training.loop import TrainConfig
        from training.loop import train as run_training
    except ImportError as exc:
        raise TrainingUnavailable(f"training needs torch: pip install 'clipline[train]' "
                                  f"({exc})") from exc
    object_sources = _sources(objects, "--objects")
    kinds = sorted({recipe.objects for recipe in RECIPES.values()})
    unknown = sorted(set(object_sources) - set(kinds))
    if unknown:
        raise UsageError(f"--objects: unknown kind {', '.join(unknown)} (known: "
                         f"{', '.join(kinds)})")
    settings = Settings()
    folder = settings.model_folder
    if name:  # before hours of training, not after
        check_new_name(folder, name, replace=replace)
    base_onnx = resolve(get_spec(base, folder), folder)
    teacher_onnx = resolve(get_spec(teacher, folder), folder) if teacher else None
    config = TrainConfig(
        out=out, base=base, base_onnx=base_onnx,
        sources=Sources(objects=object_sources,
                        backgrounds=_sources(backgrounds, "--backgrounds"),
                        pairs=tuple(pairs or ()), photos=tuple(photos or ())),
        curriculum=load_curriculum(curriculum) if curriculum else DEFAULT,
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, val_every=val_every,
        checkpoint_every=checkpoint_every, device=device, threads=threads, teacher=teacher,
        teacher_onnx=teacher_onnx, teacher_weight=teacher_weight,
        teacher_batch=teacher_batch, tune=tune, loss=loss)
    result = _run(config, run_training)
    console.print(f"trained {result.steps} steps in {result.seconds:.0f} s; checkpoint "
                  f"{result.checkpoint}", markup=False, highlight=False)
    if not name:
        console.print(f"register it: clipline models export {result.checkpoint} --name NAME",
                      markup=False, highlight=False)
        return
    extra: dict[str, Any] = {}
    if gate:
        assert eval_sets is not None
        extra["gate"] = _gate(result.checkpoint, name, base, base_onnx, blend, eval_sets,
                              baseline, max_drop, out)
    from training.export import export_and_register

    registered, agreement = export_and_register(result.checkpoint, name, folder,
                                                replace=replace, blend_weight=blend,
                                                base_onnx=base_onnx, extra=extra)
    if gate:
        kept = folder / f"{name}.gate"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(out / "gate" / "candidate", kept,
                        ignore=shutil.ignore_patterns("cutouts"))
    typer.echo(f"{name}: {registered.path} (sha256 {registered.sha256}; ONNX vs torch max "
               f"|diff| {agreement.max_abs:.2g}); use it with --model {name}")


def _run(config: Any, run_training: Any) -> Any:
    with Progress(TextColumn("{task.fields[stage]:<14}"), BarColumn(), TextColumn(
            "{task.completed}/{task.total} loss {task.fields[loss]} val {task.fields[val]}"),
            TimeElapsedColumn(), console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("train", total=config.steps, stage="", loss="-", val="-")

        def report(event: dict[str, Any]) -> None:
            if event["event"] == "step":
                fields = {"stage": event["stage"], "loss": f"{event['loss']:.4f}"}
                if "val_loss" in event:
                    fields["val"] = f"{event['val_loss']:.4f}"
                bar.update(task, completed=event["step"], **fields)
                if not console.is_terminal and event["step"] % config.val_every == 0:
                    console.print(json.dumps(event), markup=False, highlight=False)
            elif event["event"] == "resumed":
                bar.update(task, completed=event["step"], stage=event["stage"])
                console.print(f"resumed at step {event['step']} ({event['stage']})",
                              markup=False)
            else:
                console.print(f"base model: torch equals ONNX Runtime within "
                              f"{event['max_abs']:.2g}", markup=False)

        return run_training(config, report)


def _gate(checkpoint: Path, name: str, base: str, base_onnx: Path, blend: float,
          sets: list[Path], baseline: Path | None, max_drop: float, out: Path
          ) -> dict[str, Any]:
    """Evaluate the candidate (from a private models folder) against the base's report with
    the same `clipline eval` users run; raise :class:`GateRefused` when the gate fails."""
    from training.export import export_and_register

    gate_dir = out / "gate"
    staging = gate_dir / "models"
    shutil.rmtree(staging, ignore_errors=True)
    export_and_register(checkpoint, name, staging, blend_weight=blend, base_onnx=base_onnx)
    if baseline is None:
        baseline = gate_dir / "base" / "report.json"
        if not baseline.exists():
            shutil.rmtree(baseline.parent, ignore_errors=True)
            _eval(sets, base, baseline.parent, None, max_drop, os.environ)
    candidate = gate_dir / "candidate"
    shutil.rmtree(candidate, ignore_errors=True)
    env = {**os.environ, "CLIPLINE_MODELS_DIR": str(staging)}
    # The base's file must be found beside the candidate for the report's model identity.
    code = _eval(sets, name, candidate, baseline, max_drop, env)
    if code != 0:
        raise GateRefused(f"the gate refused {name}: a class is worse than {base}'s by more "
                          f"than {max_drop} (see {candidate / 'report.md'} and the sheets in "
                          f"{candidate / 'sheets'}); nothing was registered")
    return {"passed": True, "baseline": str(baseline), "max_drop": max_drop,
            "sets": [str(s) for s in sets], "report": str(candidate / "report.json")}


def _eval(sets: list[Path], model: str, out: Path, against: Path | None, max_drop: float,
          env: Any) -> int:
    cmd = [sys.executable, "-m", "clipline", "eval", *map(str, sets), "--model", model,
           "--out", str(out), "--max-drop", str(max_drop)]
    if against is not None:
        cmd += ["--against", str(against)]
    console.print("gate: " + " ".join(cmd[2:]), markup=False, highlight=False)
    return subprocess.run(cmd, env=env, check=False).returncode
