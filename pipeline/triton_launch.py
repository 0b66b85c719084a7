"""Start the development Triton server: the uint8 graph, served by pytriton from ``.venv-triton``.

pytriton needs numpy<2 and Clipline's environment has numpy 2, so the server runs in a virtual
environment of its own (``scripts/triton-venv.sh`` makes it) as a separate process:
``pipeline/adapters/segmenters/triton_dev_server.py``, run by path with that environment's
Python. This module finds both, makes sure each served model's uint8 graph exists, and builds the
command line: every model of ``Settings.served`` on one server, each under the name the Triton
segmenter asks for (``bootstrap.triton_name``: its spec's name, or TRITON_MODEL for the default
model when that is set).

The server script puts its interpreter's lib dir first in LD_LIBRARY_PATH itself (on pyenv
Pythons the backend stub would load another libpython otherwise; DESIGN §3), so a launcher only
runs it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.bootstrap import triton_name
from pipeline.errors import UsageError
from pipeline.models import ModelSpec, get_spec, inspect, resolve, uint8_form
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-triton"
SERVER_SCRIPT = (Path(__file__).resolve().parent / "adapters" / "segmenters"
                 / "triton_dev_server.py")


@dataclass(frozen=True)
class ServeOptions:
    """How the development server listens and batches (the script's flags, same defaults)."""

    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    max_batch_size: int = 16
    queue_delay_us: int = 1000
    delay_ms: int = 0
    threads: int = 0


def model_files(settings: Settings) -> dict[str, Path]:
    """Triton name → verified uint8 graph, for every served model (the default first); each
    graph is exported when it is missing. Raises ``ModelError`` for a model not pulled. A
    trained model (registered in the models folder) is served under its own name."""
    folder = settings.model_folder
    return {triton_name(settings, model): uint8_graph(get_spec(model, folder), folder)
            for model in settings.served}


def uint8_graph(spec: ModelSpec, models_dir: Path) -> Path:
    """The verified uint8 graph of ``spec`` in ``models_dir``, exported (and checked against the
    original on sample images) when it is not there yet."""
    target = uint8_form(spec)
    if spec.layout == "uint8_nhwc" or inspect(target, models_dir).present:
        return resolve(target, models_dir)
    from pipeline.adapters.segmenters.onnx_graph import export_uint8, sample_images

    path, _ = export_uint8(resolve(spec, models_dir), spec, sample_images(spec.input_size))
    return path


def triton_python(venv: Path = VENV) -> Path:
    """The interpreter of the server's environment; ``UsageError`` saying how to make it."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise UsageError(
            f"no Triton environment at {venv}: run scripts/triton-venv.sh (or make triton) "
            "to create it"
        )
    return python


def server_command(
    models: Mapping[str, Path], options: ServeOptions, *, venv: Path = VENV
) -> list[str]:
    """The command line that serves each of ``models`` (name → uint8 graph) with ``options``."""
    named = [arg for name, path in models.items() for arg in ("--model", f"{name}={path}")]
    return [
        str(triton_python(venv)), str(SERVER_SCRIPT), *named,
        "--grpc-port", str(options.grpc_port),
        "--http-port", str(options.http_port),
        "--metrics-port", str(options.metrics_port),
        "--max-batch-size", str(options.max_batch_size),
        "--queue-delay-us", str(options.queue_delay_us),
        "--delay-ms", str(options.delay_ms),
        "--threads", str(options.threads),
    ]


def start(
    settings: Settings, options: ServeOptions, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start the server for ``settings``' served models; its output goes to this process's.

    ``new_session`` keeps a terminal's Ctrl-C (sent to the whole foreground group) from reaching
    the server's helpers: then stop it with SIGTERM to the server process alone.
    """
    command = server_command(model_files(settings), options)
    return subprocess.Popen(command, start_new_session=new_session)
