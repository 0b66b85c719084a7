"""The ``Segmenter`` port on an NVIDIA Triton server, through tritonclient (gRPC, or HTTP).

The served model is Clipline's uint8 rewrite (``pipeline.adapters.segmenters.onnx_graph``), or a
TensorRT plan built from it: input uint8 [batch, H, W, 3] RGB at model size, one output ``mask``
float32 [batch, H, W] already normalised to [0, 1]. The graph does the normalisation, so requests
carry raw pixels (4x fewer bytes than float32) and ask for the mask alone.

Construction checks the server and reads the model's metadata and config once: the input's name,
dtype (must be UINT8) and size, the output's name, and ``max_batch_size`` (larger batches are
split). Vendor errors are translated here, once::

    server unreachable, connection refused or reset, model not loaded  → InferenceUnavailable
    deadline exceeded (client timeout), HTTP 408/504                   → OperationTimeout
    wrong dtype or shape in the metadata, request refused as invalid   → ModelError
    any other error the server reports (internal, overloaded, …)       → InferenceUnavailable

The gRPC client is thread-safe. The HTTP client runs on gevent: use it from one thread.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from tritonclient.utils import InferenceServerException

from pipeline.errors import InferenceUnavailable, ModelError, OperationTimeout

TritonProtocol = Literal["grpc", "http"]
UINT8_HINT = (
    "Clipline sends uint8 — serve the uint8 graph (clipline triton serve, or "
    "clipline models export-uint8 for a model repository)"
)
# Status names from the gRPC client ("StatusCode.X") and HTTP status codes from the HTTP client.
_TIMEOUT = {"StatusCode.DEADLINE_EXCEEDED", "408", "504"}
_REFUSED = {"StatusCode.INVALID_ARGUMENT", "StatusCode.UNIMPLEMENTED", "400"}


@dataclass(frozen=True)
class ServedModel:
    """What the server says about the model, read once at construction."""

    input_name: str
    output_name: str
    input_size: tuple[int, int]
    max_batch: int | None  # None: the server takes any batch size in one request


class TritonSegmenter:
    """Masks from a model served by Triton; [N, H, W, 3] uint8 in, [N, H, W] float32 out."""

    def __init__(
        self,
        url: str,
        model_name: str,
        *,
        model_version: str = "",
        protocol: TritonProtocol = "grpc",
        timeout: float = 30.0,
        expected_size: tuple[int, int] | None = None,
    ) -> None:
        """``url`` is ``host:port`` of the protocol's endpoint (gRPC 8001, HTTP 8000 by
        default). ``timeout`` bounds every call, inference included. ``expected_size``, when
        given, must match the served input size (the spec's size, say)."""
        self.url = url
        self.model_name = model_name
        self.model_version = model_version
        self.protocol: TritonProtocol = protocol
        self.timeout = timeout
        self._expected_size = expected_size
        self._where = f"Triton at {url} ({protocol})"
        self._client, self._api, self._transport_errors = _connect(protocol, url, timeout)
        self._model = self.check_ready()

    @property
    def input_size(self) -> tuple[int, int]:
        return self._model.input_size

    @property
    def max_batch(self) -> int | None:
        """The model's max_batch_size; requests are split to fit it."""
        return self._model.max_batch

    def check_ready(self) -> ServedModel:
        """Check that the server is live and the model ready; read its metadata and config."""
        version = self.model_version or "latest"
        with self._translated():
            try:
                live = self._client.is_server_live(**self._deadline())
            except (InferenceServerException, *self._transport_errors) as exc:
                raise InferenceUnavailable(f"{self._where} is not reachable: {exc}") from exc
            if not live:
                raise InferenceUnavailable(f"{self._where} is not reachable: it is not live")
            ready = self._client.is_model_ready(
                self.model_name, self.model_version, **self._deadline()
            )
            if not ready:
                raise InferenceUnavailable(
                    f"{self._where} has no ready model {self.model_name!r} (version {version}): "
                    f"{self._known_models()}"
                )
            metadata = self._client.get_model_metadata(
                self.model_name, self.model_version, **self._deadline(as_json=True)
            )
            config = self._client.get_model_config(
                self.model_name, self.model_version, **self._deadline(as_json=True)
            )
        # gRPC wraps the config in {"config": ...}; HTTP returns it bare.
        return self._served(metadata, config.get("config", config))

    def predict(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``images`` is [N, H, W, 3] uint8 RGB at the model's size; returns [N, H, W] float32.

        A wrong shape or dtype is the caller's bug and raises ``ValueError``.
        """
        h, w = self.input_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(
                f"expected [N, {h}, {w}, 3] uint8 images, got {list(images.shape)} {images.dtype}"
            )
        n = images.shape[0]
        if n == 0:
            return np.empty((0, h, w), dtype=np.float32)
        step = self._model.max_batch or n
        parts = [self._infer(images[start : start + step]) for start in range(0, n, step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        self._client.close()

    # -- internals --------------------------------------------------------------------------

    def _infer(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        pixels = np.ascontiguousarray(batch)
        request = self._api.InferInput(self._model.input_name, list(pixels.shape), "UINT8")
        request.set_data_from_numpy(pixels)
        wanted = self._api.InferRequestedOutput(self._model.output_name)
        with self._translated():
            result = self._client.infer(
                self.model_name, [request], model_version=self.model_version,
                outputs=[wanted], **self._deadline(),
            )
        masks = result.as_numpy(self._model.output_name)
        expected = (len(batch), *self.input_size)
        if masks is None or masks.shape != expected:
            got = None if masks is None else list(masks.shape)
            raise ModelError(
                f"model {self.model_name!r} on {self._where} answered a mask of shape {got}; "
                f"expected {list(expected)}"
            )
        # The answer's buffer is read-only; callers refine masks in place.
        return np.require(masks, dtype=np.float32, requirements=["C", "W"])

    def _deadline(self, *, as_json: bool = False) -> dict[str, Any]:
        # gRPC takes a deadline per call; the HTTP client's network timeout was set at connect.
        extra: dict[str, Any] = {"as_json": True} if as_json and self.protocol == "grpc" else {}
        if self.protocol == "grpc":
            extra["client_timeout"] = self.timeout
        return extra

    def _known_models(self) -> str:
        """The models the server lists, for the message of a missing model (best effort)."""
        try:
            index = self._client.get_model_repository_index(**self._deadline(as_json=True))
        except (InferenceServerException, *self._transport_errors) as exc:
            return f"it is not loaded, and the model list is unavailable ({exc})"
        entries = index.get("models", []) if isinstance(index, dict) else index
        names = sorted(
            f"{e.get('name')} ({e.get('state', 'unknown').lower()})" for e in entries
        )
        return "it is not loaded; the server has " + (", ".join(names) or "no models")

    def _served(self, metadata: dict[str, Any], config: dict[str, Any]) -> ServedModel:
        name = repr(self.model_name)
        inputs, outputs = metadata.get("inputs", []), metadata.get("outputs", [])
        if len(inputs) != 1 or not outputs:
            raise ModelError(
                f"model {name} on {self._where} has {len(inputs)} inputs and {len(outputs)} "
                "outputs; Clipline needs one image input and a 'mask' output"
            )
        image = inputs[0]
        shape = [int(d) for d in image.get("shape", [])]
        if image.get("datatype") != "UINT8":
            raise ModelError(
                f"model {name} on {self._where} takes {image.get('datatype')} {shape}; "
                + UINT8_HINT
            )
        max_batch = int(config.get("max_batch_size", 0) or 0)
        # With batching on, the metadata shape starts with -1; without, the batch is in dims.
        dims = shape[1:] if len(shape) == 4 else []
        if len(dims) != 3 or dims[2] != 3 or min(dims) <= 0:
            raise ModelError(
                f"model {name} on {self._where} takes {shape}; expected [-1, H, W, 3] uint8 RGB"
            )
        size = (dims[0], dims[1])
        if self._expected_size is not None and size != self._expected_size:
            raise ModelError(
                f"model {name} on {self._where} takes {size[0]}x{size[1]} images; the "
                f"model spec says {self._expected_size[0]}x{self._expected_size[1]}"
            )
        names = [o.get("name") for o in outputs]
        if "mask" in names:
            output = "mask"
        elif len(names) == 1:
            output = str(names[0])
        else:
            raise ModelError(f"model {name} on {self._where} has outputs {names} and no 'mask'")
        fixed = shape[0] if max_batch == 0 and shape[0] > 0 else None
        return ServedModel(str(image["name"]), output, size, max_batch or fixed)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        where = f"{self._where}, model {self.model_name!r}"
        try:
            yield
        except InferenceServerException as exc:
            raise _translate(exc, where) from exc
        except TimeoutError as exc:
            raise OperationTimeout(f"{where}: no answer within {self.timeout:g} s") from exc
        except self._transport_errors as exc:
            raise InferenceUnavailable(f"{where}: {type(exc).__name__}: {exc}") from exc


def _translate(exc: InferenceServerException, where: str) -> Exception:
    status = str(exc.status() or "")
    message = f"{where}: {exc.message() or exc}"
    if status in _TIMEOUT:
        return OperationTimeout(message)
    if status in _REFUSED:
        return ModelError(message)
    return InferenceUnavailable(message)


def _connect(
    protocol: TritonProtocol, url: str, timeout: float
) -> tuple[Any, Any, tuple[type[BaseException], ...]]:
    """The client, its module (for InferInput and friends) and its transport errors."""
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        options = [
            ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
            # A restarted Triton is found within a second, not after gRPC's default backoff
            # (which grows to two minutes): jobs retried meanwhile would fail for nothing.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        client = grpcclient.InferenceServerClient(url, channel_args=options)
        # The gRPC client reports transport failures as InferenceServerException itself.
        return client, grpcclient, ()
    if protocol == "http":
        import gevent
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(
            url, connection_timeout=timeout, network_timeout=timeout
        )
        # gevent.Timeout is a BaseException: named here so nothing broader is ever caught.
        return client, httpclient, (OSError, http.client.HTTPException, gevent.Timeout)
    raise ValueError(f"unknown Triton protocol {protocol!r}")
