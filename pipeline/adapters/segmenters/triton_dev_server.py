"""A real Triton server on CPU for tests and developers: Clipline's uint8 graph behind pytriton.

Run BY PATH with the interpreter of ``.venv-triton`` (``scripts/triton-venv.sh`` makes it)::

    .venv-triton/bin/python pipeline/adapters/segmenters/triton_dev_server.py \
        --model u2net=u2net.uint8.onnx --model u2netp=u2netp.uint8.onnx

Each ``--model NAME=FILE`` is served under its own name, side by side on one server (the
production model repository has a folder per model the same way). ``--model-file FILE`` with
``--model-name NAME`` is the one-model form.

It imports only the standard library, numpy, onnxruntime and pytriton: pytriton needs numpy<2,
Clipline's own environment has numpy 2, so this file never imports ``pipeline``.

Triton itself (the ``tritonserver`` binary in the pytriton wheel) does the serving: gRPC and
HTTP endpoints, model metadata and config, dynamic batching. Batches reach this process through
pytriton's Python backend and run on ONNX Runtime. Tensors are named as in the ONNX graph (input
``image`` uint8 [batch, H, W, 3], output ``mask`` float32 [batch, H, W]), so a client sees what
a production Triton serving the TensorRT plan of the same graph shows. A float32 graph is
served as it is, with a warning: clients must refuse it, and tests check that Clipline's does.

One line ``clipline-triton: ready grpc=HOST:PORT http=HOST:PORT model=NAME[,NAME...]`` goes to
stdout once the models answer. SIGTERM or SIGINT to this process (not to its process group)
stops the server cleanly: tritonserver, the backend stubs, their shared memory and the
workspace go. A signal sent to the whole group reaches pytriton's helpers too, and its shutdown
can then hang; launchers therefore start it in a session of its own and signal it alone. It
also stops when its parent process dies.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY = "clipline-triton: ready"
HOST = "127.0.0.1"  # never 0.0.0.0: a developer's model server is nobody else's business


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="triton_dev_server.py",
        description="Serve a uint8 NHWC segmentation graph (clipline models export-uint8) on a "
        "real Triton server on 127.0.0.1, running the model with ONNX Runtime on CPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FILE",
                        help="serve the uint8 .onnx graph FILE (input uint8 [N,H,W,3], output "
                        "'mask') as NAME; repeat for several models")
    parser.add_argument("--model-file", type=Path,
                        help="one model's uint8 .onnx graph (instead of --model)")
    parser.add_argument("--model-name", help="name --model-file is served as")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port")
    parser.add_argument("--max-batch-size", type=int, default=16,
                        help="largest batch Triton forms (and accepts in one request)")
    parser.add_argument("--queue-delay-us", type=int, default=1000,
                        help="how long the dynamic batcher waits to fill a batch")
    parser.add_argument("--delay-ms", type=int, default=0,
                        help="extra latency per batch, for tests that need a slow model")
    parser.add_argument("--threads", type=int, default=0,
                        help="ONNX Runtime intra-op threads (0: ONNX Runtime decides)")
    parser.add_argument("--exit-timeout-s", type=int, default=3,
                        help="on stop, how long in-flight requests and open client connections "
                        "are waited for (Triton's own default, 30, makes every restart slow)")
    parser.add_argument("--verbose", action="store_true", help="debug logs from pytriton")
    args = parser.parse_args(argv)
    if args.max_batch_size < 1:
        parser.error("--max-batch-size must be at least 1")
    args.models = _models(parser, args)
    return args


def _models(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Path]:
    """NAME → FILE of every model to serve, each file checked to exist."""
    pairs = [item.partition("=") for item in args.model]
    if any(not name or not sep or not path for name, sep, path in pairs):
        parser.error("--model takes NAME=FILE")
    models = {name: Path(path) for name, _, path in pairs}
    if len(models) != len(pairs):
        parser.error("--model names a model twice")
    if (args.model_file is None) != (args.model_name is None):
        parser.error("--model-file and --model-name go together")
    if args.model_file is not None:
        if args.model_name in models:
            parser.error(f"--model-name {args.model_name} is also given as --model")
        models[args.model_name] = args.model_file
    if not models:
        parser.error("give --model NAME=FILE (or --model-file)")
    for name, path in models.items():
        if not path.is_file():
            parser.error(f"the file of model {name}, {path}, does not exist")
    return models


def _own_libdir_first() -> None:
    """On pyenv-built Pythons the Python backend's stub finds another libpython unless the
    interpreter's own lib dir comes first; tritonserver and the stub inherit this environment."""
    libdir = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and libdir not in current.split(":"):
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def _dims(shape: list[Any]) -> tuple[int, ...]:
    """The graph's shape without the batch axis; symbolic dimensions become -1."""
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape[1:])


@dataclass(frozen=True)
class Binding:
    """What Triton is told about the model, read from the ONNX graph."""

    infer: Any
    input_name: str
    input_dtype: Any
    input_shape: tuple[int, ...]
    mask_shape: tuple[int, ...]
    max_batch_size: int


def _binding(model_file: Path, args: argparse.Namespace) -> Binding:
    import numpy as np
    import onnxruntime as ort
    from pytriton.decorators import batch

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
    )
    model_input = session.get_inputs()[0]
    dtypes = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}
    if model_input.type not in dtypes:
        sys.exit(f"{model_file} takes {model_input.type}; expected uint8 (or float32)")
    if model_input.type != "tensor(uint8)":
        # Served as it is: a client that checks the dtype (Clipline's does) must refuse it.
        logging.warning("%s takes float32, not uint8: Clipline will refuse this model",
                        model_file)
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    mask = outputs[names.index("mask")] if "mask" in names else outputs[0]
    batch_dim = model_input.shape[0]
    # A graph exported with a fixed batch (u2netp's original says 1) cannot run larger ones.
    fixed = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else args.max_batch_size
    input_name, delay = model_input.name, args.delay_ms / 1000.0

    @batch  # type: ignore[untyped-decorator]  # pytriton has no type hints
    def infer(**inputs: Any) -> dict[str, Any]:
        if delay:
            time.sleep(delay)
        images = np.ascontiguousarray(inputs[input_name])
        (masks,) = session.run([mask.name], {input_name: images})
        return {"mask": np.asarray(masks, dtype=np.float32)}

    return Binding(infer, input_name, dtypes[model_input.type], _dims(model_input.shape),
                   _dims(mask.shape), min(fixed, args.max_batch_size))


def serve(args: argparse.Namespace) -> int:
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    _own_libdir_first()
    bindings = {name: _binding(path, args) for name, path in args.models.items()}
    config = TritonConfig(
        grpc_address=HOST, grpc_port=args.grpc_port,
        http_address=HOST, http_port=args.http_port,
        metrics_address=HOST, metrics_port=args.metrics_port,
        exit_timeout_secs=args.exit_timeout_s,
    )
    stop = threading.Event()
    # Python's default SIGTERM handler would exit without pytriton's clean-up (tritonserver, the
    # backend stubs and their shared memory would outlive us): turn it into an orderly stop.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    triton = Triton(config=config)
    try:
        for name, model in bindings.items():
            triton.bind(
                model_name=name,
                infer_func=model.infer,
                inputs=[Tensor(name=model.input_name, dtype=model.input_dtype,
                               shape=model.input_shape)],
                outputs=[Tensor(name="mask", dtype=np.float32, shape=model.mask_shape)],
                config=ModelConfig(
                    max_batch_size=model.max_batch_size,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
                ),
                strict=True,
            )
        triton.run()
        print(f"{READY} grpc={HOST}:{args.grpc_port} http={HOST}:{args.http_port} "
              f"model={','.join(bindings)}", flush=True)
        parent = os.getppid()
        while not stop.is_set():
            if not triton.is_alive():
                print("clipline-triton: the server stopped on its own", file=sys.stderr)
                return 1
            if os.getppid() != parent:  # whoever started us is gone: nobody will stop us
                break
            stop.wait(1.0)
        return 0
    finally:
        triton.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
