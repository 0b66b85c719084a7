"""The ``Segmenter`` port on ONNX Runtime, in process (the embedded shape of Clipline).

Two forms of a model file are accepted, told apart by the input's dtype:

- the exported graph (float32 NCHW input, often a fixed batch of 1, several outputs): the spec's
  normalisation is done here in numpy, images are run one fixed-size batch at a time, and the
  spec's post-processing (min-max) is applied to the mask;
- Clipline's rewrite (``pipeline.adapters.segmenters.onnx_graph``: uint8 NHWC input, dynamic
  batch, one ``mask`` output): pixels go in as they are, the whole batch in one call, and the
  min-max is skipped when the graph's metadata says it is folded in.

Only the mask output is fetched: the other outputs of U²-Net are never copied out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from pipeline.errors import ModelError
from pipeline.models import ModelSpec, min_max

# onnxruntime's errors derive from Exception, not from one base class of their own.
ORT_ERRORS: tuple[type[Exception], ...] = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.NoSuchFile,
    ort_state.NoModel,
    ort_state.EngineError,
    ort_state.RuntimeException,
    ort_state.InvalidProtobuf,
    ort_state.ModelLoaded,
    ort_state.NotImplemented,
    ort_state.InvalidGraph,
    ort_state.EPFail,
)

# Metadata the rewrite writes into the graph (see onnx_graph): which post-processing it folded.
POSTPROCESS_KEY = "clipline.postprocess"


class OnnxSegmenter:
    """A model file run by ONNX Runtime; [N, H, W, 3] uint8 in, [N, H, W] float32 in [0, 1] out."""

    def __init__(
        self,
        model_path: Path,
        spec: ModelSpec,
        *,
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        allow_spinning: bool = True,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        """``intra_op_threads`` defaults to the machine's CPU count. Turn ``allow_spinning`` off
        when other threads (decode, encode) share the cores: spinning workers burn CPU between
        operators."""
        self._spec = spec
        self._session = _load(
            model_path,
            intra_op_threads=intra_op_threads or os.cpu_count() or 1,
            inter_op_threads=inter_op_threads,
            allow_spinning=allow_spinning,
            providers=providers,
        )
        model_input = self._session.get_inputs()[0]
        self._input_name: str = model_input.name
        self._uint8: bool = model_input.type == "tensor(uint8)"
        _check_input(model_input, spec, uint8=self._uint8, path=model_path)
        outputs = self._session.get_outputs()
        index = 0 if self._uint8 and len(outputs) == 1 else spec.output_index
        if index >= len(outputs):
            raise ModelError(f"{model_path} has {len(outputs)} outputs, the spec wants #{index}")
        self._output_names = [outputs[index].name]
        batch = model_input.shape[0]
        # A fixed batch dimension (U²-Net-p's export says 1) is honoured by running in chunks.
        self._fixed_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        metadata = self._session.get_modelmeta().custom_metadata_map
        folded = self._uint8 and metadata.get(POSTPROCESS_KEY) == spec.postprocess
        self._min_max = spec.postprocess == "min_max" and not folded

    @property
    def input_size(self) -> tuple[int, int]:
        return self._spec.input_size

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def takes_uint8(self) -> bool:
        """True for Clipline's rewritten graph (normalisation inside the graph)."""
        return self._uint8

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the graph insists on, or None when any batch size runs in one call."""
        return self._fixed_batch

    def predict(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``images`` is [N, H, W, 3] uint8 RGB at the model's size; returns [N, H, W] float32.

        A wrong shape or dtype is the caller's bug and raises ``ValueError``.
        """
        h, w = self._spec.input_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(
                f"expected [N, {h}, {w}, 3] uint8 images, got {list(images.shape)} {images.dtype}"
            )
        if images.shape[0] == 0:
            return np.empty((0, h, w), dtype=np.float32)
        feed = (
            np.ascontiguousarray(images)
            if self._uint8
            else self._spec.normalisation.to_nchw(images)
        )
        raw = self._run_in_chunks(feed)
        masks = _as_masks(raw, images.shape[0], (h, w))
        return min_max(masks) if self._min_max else masks

    def _run_in_chunks(self, feed: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        n = feed.shape[0]
        step = self._fixed_batch
        if step is None:
            return self._run(feed)
        parts = []
        for start in range(0, n, step):
            chunk = feed[start : start + step]
            short = step - chunk.shape[0]
            if short:  # pad the last chunk to the fixed batch size and drop the padding after
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), chunk.dtype)])
            parts.append(self._run(chunk)[: step - short])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        try:
            (out,) = self._session.run(self._output_names, {self._input_name: batch})
        except ORT_ERRORS as exc:
            raise ModelError(f"the model failed to run on a batch of {len(batch)}: {exc}") from exc
        result: npt.NDArray[np.float32] = out
        return result


def _load(
    path: Path,
    *,
    intra_op_threads: int,
    inter_op_threads: int,
    allow_spinning: bool,
    providers: Sequence[str],
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if allow_spinning else "0"
    )
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except ORT_ERRORS as exc:
        raise ModelError(f"cannot load the model {path}: {exc}") from exc


def _check_input(model_input: Any, spec: ModelSpec, *, uint8: bool, path: Path) -> None:
    """The graph's input must be what the spec says: a 4-d image tensor of the spec's size."""
    shape = list(model_input.shape)
    h, w = spec.input_size
    expected = [h, w, 3] if uint8 else [3, h, w]
    if not uint8 and model_input.type != "tensor(float)":
        raise ModelError(f"{path} takes {model_input.type}; expected float32 or uint8 input")
    # Symbolic dimensions (strings or None) are accepted; fixed ones must match the spec.
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape[1:]]
    if len(shape) != 4 or any(
        f is not None and f != e for f, e in zip(fixed, expected, strict=True)
    ):
        layout = "[N, H, W, 3] uint8" if uint8 else "[N, 3, H, W] float32"
        raise ModelError(
            f"{path} takes {shape}; spec {spec.name} wants {layout} with H, W = {h}, {w}"
        )


def _as_masks(
    raw: npt.NDArray[np.float32], n: int, size: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """[N, 1, H, W] or [N, H, W] → a writable C-contiguous float32 [N, H, W]."""
    masks = raw[:, 0] if raw.ndim == 4 else raw
    if masks.shape != (n, *size):
        raise ModelError(
            f"the model's mask is {list(raw.shape)}, expected [{n}, 1, {size[0]}, {size[1]}]"
        )
    return np.require(masks, dtype=np.float32, requirements=["C", "W"])
