"""u2netp through Clipline against the U²-Net authors' own u2netp outputs.

    .venv/bin/python -m bench.fidelity [--rembg] [--count N] [--keep]

Runs ``clipline run --channels alpha`` over the U²-Net repository's test images and compares each
grey mask with ``u2netp_results/<stem>.png``, which the authors produced with their own code: an
oracle for running u2netp exactly as they do (not ground truth). Per image: mean absolute
difference of the soft masks in [0, 1], binary agreement and IoU at 128, boundary F. Then the
mean over images and the three worst by mean absolute difference. With ``--rembg`` the same for
``rembg p -m u2net_custom -om`` on the same file (scripts/rembg-venv.sh first), to show what a
plain rembg pipeline gets against the same oracle. ``--count N`` scores only the first N images
by name (a smoke run).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.masks import MaskComparison, compare, load_mask, summarise
from bench.vs_rembg import (
    BenchError,
    Tools,
    add_tool_options,
    machine_line,
    prepare_tools,
    run_bench,
    run_checked,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
TEST_DATA = Path("u2net-test") / "test_data"


def pairs(images: Path, oracle: Path) -> list[str]:
    """Stems of the images that have an oracle mask; a missing one is an error, not a skip."""
    for folder in (images, oracle):
        if not folder.is_dir():
            raise BenchError(f"{folder} is not a folder")
    stems = sorted(p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not stems:
        raise BenchError(f"no images in {images}")
    missing = [s for s in stems if not (oracle / f"{s}.png").exists()]
    if missing:
        raise BenchError(f"{len(missing)} images have no {oracle}/<stem>.png: {missing[:5]}")
    return stems


def subset(images: Path, stems: Sequence[str], dst: Path) -> Path:
    """A folder holding only these images: both tools take a folder, not a list of files."""
    dst.mkdir()
    wanted = set(stems)
    for path in images.iterdir():
        if path.stem in wanted and path.suffix.lower() in IMAGE_SUFFIXES:
            shutil.copyfile(path, dst / path.name)
    return dst


def score(oracle: Path, masks: Path, stems: Sequence[str], what: str) -> list[MaskComparison]:
    out = []
    for stem in stems:
        produced = masks / f"{stem}.png"
        if not produced.exists():
            raise BenchError(f"{what} wrote no {produced}")
        out.append(compare(load_mask(oracle / f"{stem}.png"), load_mask(produced)))
    return out


def run_tools(tools: Tools, images: Path, work: Path, extra: Sequence[str],
              with_rembg: bool) -> dict[str, Path]:
    """Masks from each tool into its own folder under ``work``; prints the commands."""
    folders = {"clipline": work / "clipline"}
    cmd = tools.clipline_run(images, folders["clipline"], ["--channels", "alpha", *extra])
    print("clipline: " + shlex.join(cmd))
    seconds = run_checked(cmd, tools.clipline_env(), "clipline run")
    print(f"  {seconds:.1f} s wall clock")
    if with_rembg:
        folders["rembg"] = work / "rembg"
        cmd = tools.rembg_p(images, folders["rembg"], only_mask=True)
        print("rembg:    " + shlex.join(cmd))
        seconds = run_checked(cmd, tools.rembg_env(), "rembg p")
        print(f"  {seconds:.1f} s wall clock")
    return folders


def table(stems: Sequence[str], sizes: Sequence[tuple[int, int]],
          results: dict[str, list[MaskComparison]]) -> None:
    tools = list(results)
    head = f"{'image':<16}{'size':>11}"
    for tool in tools:
        head += f"  {tool + ' MAD':>13}{'agree':>7}{'IoU':>7}{'bF':>7}"
    print(head)

    def cells(c: MaskComparison) -> str:
        return f"  {c.mean_abs_diff:>13.4f}{c.agreement:>7.4f}{c.iou:>7.4f}{c.boundary_f:>7.4f}"

    for i, stem in enumerate(stems):
        w, h = sizes[i]
        print(f"{stem[:16]:<16}{f'{w}x{h}':>11}" + "".join(cells(results[t][i]) for t in tools))
    means = {t: summarise(results[t]) for t in tools}
    print(f"{'mean':<16}{len(stems):>11}" + "".join(cells(means[t].mean) for t in tools))
    for tool in tools:
        worst = sorted(zip(stems, results[tool], strict=True),
                       key=lambda sc: sc[1].mean_abs_diff, reverse=True)[:3]
        print(f"worst 3 by MAD, {tool}: "
              + ", ".join(f"{s} {c.mean_abs_diff:.4f} (agree {c.agreement:.4f})"
                          for s, c in worst))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.fidelity",
        description="Masks of `clipline run --channels alpha` (u2netp) against the U2-Net "
        "authors' u2netp_results: mean absolute difference and binary agreement per image.")
    add_tool_options(p)
    p.add_argument("--images", type=Path, help="input folder (default "
                   "DATA/u2net-test/test_data/test_images)")
    p.add_argument("--oracle", type=Path, help="reference masks, <stem>.png (default "
                   "DATA/u2net-test/test_data/u2netp_results)")
    p.add_argument("--rembg", action="store_true",
                   help="also score `rembg p -m u2net_custom -om` on the same model file")
    p.add_argument("--count", type=int, help="only the first COUNT images by name (default all)")
    args = p.parse_args(argv)
    if args.count is not None and args.count < 1:
        p.error("--count must be at least 1")
    return args


def bench(args: argparse.Namespace, work: Path) -> int:
    images = args.images or args.data / TEST_DATA / "test_images"
    oracle = args.oracle or args.data / TEST_DATA / "u2netp_results"
    print(f"machine: {machine_line()} at start (other people's tests may share these cores)")
    stems = pairs(images, oracle)
    print(f"{len(stems[:args.count])} of {len(stems)} images from {images}; oracle {oracle}")
    if args.count is not None and args.count < len(stems):
        stems = stems[:args.count]
        images = subset(images, stems, work / "images")
    tools = prepare_tools(args.models_dir.resolve(), args.model_file, args.rembg_home,
                          with_rembg=args.rembg)
    folders = run_tools(tools, images, work, shlex.split(args.clipline_args), args.rembg)
    results = {tool: score(oracle, folder, stems, tool) for tool, folder in folders.items()}
    sizes = [load_mask(oracle / f"{s}.png").shape[::-1] for s in stems]
    print()
    table(stems, [(int(w), int(h)) for w, h in sizes], results)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_bench("fidelity", bench, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
