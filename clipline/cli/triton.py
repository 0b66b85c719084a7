"""``clipline triton``: a real Triton server on this machine, for developing against the
Triton segmenter (CLIPLINE_SEGMENTER=triton) without a GPU or the official container."""

from __future__ import annotations

import signal
import subprocess
from types import FrameType

import typer

from pipeline.settings import Settings
from pipeline.triton_launch import ServeOptions, start

app = typer.Typer(
    help="Run a local Triton server for the Triton segmenter.", no_args_is_help=True
)

STOP_GRACE_SECONDS = 30.0


@app.command(
    "serve",
    help="Serve every served model's uint8 graph on a real Triton server on 127.0.0.1, each "
    "under its own name (CLIPLINE_SERVED_MODELS, default just CLIPLINE_MODEL; "
    "CLIPLINE_TRITON_MODEL renames the default model), in the foreground (Ctrl-C stops it).\n\n"
    "Triton (from the nvidia-pytriton wheel, in .venv-triton: scripts/triton-venv.sh makes it) "
    "does the serving and the dynamic batching; the model runs on ONNX Runtime on CPU. The "
    "uint8 graphs (clipline models export-uint8) are exported first if they are missing; the "
    "models themselves must have been pulled. Point Clipline at it with CLIPLINE_SEGMENTER=triton "
    "(CLIPLINE_TRITON_URL defaults to 127.0.0.1:8001).",
)
def serve(
    grpc_port: int = typer.Option(8001, help="gRPC port (CLIPLINE_TRITON_URL)."),
    http_port: int = typer.Option(8000, help="HTTP port (with CLIPLINE_TRITON_PROTOCOL=http)."),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port."),
    max_batch_size: int = typer.Option(
        16, min=1, help="Largest batch Triton forms; larger requests are refused."
    ),
    queue_delay_us: int = typer.Option(
        1000, min=0, help="How long the dynamic batcher waits to fill a batch (microseconds)."
    ),
    delay_ms: int = typer.Option(
        0, min=0, help="Extra latency per batch: a slow model, for trying timeouts."
    ),
    threads: int = typer.Option(
        0, min=0, help="ONNX Runtime intra-op threads (0: ONNX Runtime decides)."
    ),
) -> None:
    """Serve the models on a local Triton server (see the help text above)."""
    settings = Settings()
    options = ServeOptions(
        grpc_port=grpc_port, http_port=http_port,
        metrics_port=metrics_port, max_batch_size=max_batch_size,
        queue_delay_us=queue_delay_us, delay_ms=delay_ms, threads=threads,
    )
    # A session of its own: a terminal's Ctrl-C reaches only this process, which passes it on to
    # the server alone (a signal to all of pytriton's processes at once can hang its shutdown).
    server = start(settings, options, new_session=True)

    def forward(_signum: int, _frame: FrameType | None) -> None:
        server.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        code = server.wait()
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                server.kill()
    raise typer.Exit(code)
