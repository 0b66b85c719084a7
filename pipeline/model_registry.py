"""The models a worker serves side by side, each built on first use.

A deployment serves one or more models (``CLIPLINE_SERVED_MODELS``, the default ``CLIPLINE_MODEL``
first); a job names one (``jobs.model``), and the worker runs that model on it. ``ModelRegistry``
implements the ``Segmenters`` port: a ``LazySegmenter`` per served model, so a process pays for a
model (a 176 MB ONNX session, a Triton client) only once a job asks for it, and a model that
cannot be built now (Triton restarting) fails that job with a retryable error instead of the
process. A job whose model is not served fails with ``ModelNotServed`` (dead at once, and
re-drivable once a worker serves it). The fake is ``pipeline.adapters.segmenters.fake``'s
``FakeSegmenters``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from pipeline.models import check_served
from pipeline.ports import Segmenter


class LazySegmenter:
    """Builds the real segmenter on first use, and again after a failed build.

    A worker process may start while Triton is restarting: building eagerly would fail the
    process before it could even claim a job. Built lazily, the job is claimed, fails with
    ``InferenceUnavailable`` and is retried with backoff like any other outage.
    """

    def __init__(self, build: Callable[[], Segmenter], input_size: tuple[int, int]) -> None:
        self._build = build
        self._size = input_size
        self._inner: Segmenter | None = None
        self._lock = threading.Lock()

    @property
    def input_size(self) -> tuple[int, int]:
        return self._size

    @property
    def built(self) -> bool:
        return self._inner is not None

    def warm(self) -> Segmenter:
        with self._lock:
            if self._inner is None:
                self._inner = self._build()
            return self._inner

    def predict(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        return self.warm().predict(images)


class ModelRegistry:
    """Implements ``Segmenters``: one ``LazySegmenter`` per served model, built on first use.

    ``build(name)`` makes the segmenter of a served model (raising what the adapter raises:
    ``ModelError`` for a missing file, ``InferenceUnavailable`` for a Triton that does not
    answer); ``input_size(name)`` is its (height, width), known without building it.
    Thread-safe: each model is built at most once at a time.
    """

    def __init__(self, served: Sequence[str], build: Callable[[str], Segmenter],
                 input_size: Callable[[str], tuple[int, int]]) -> None:
        if not served:
            raise ValueError("a registry serves at least one model")
        self._served = tuple(dict.fromkeys(served))
        self._models = {name: LazySegmenter(_bound(build, name), input_size(name))
                        for name in self._served}

    @property
    def served(self) -> tuple[str, ...]:
        return self._served

    @property
    def default(self) -> str:
        return self._served[0]

    def get(self, model: str) -> LazySegmenter:
        return self._models[check_served(model, self._served)]

    def warm(self, model: str | None = None) -> Segmenter:
        """Build ``model`` (the default when None) now; raises what its build raises."""
        return self.get(model or self.default).warm()

    def built(self) -> list[str]:
        """The models built so far, in serving order."""
        return [name for name in self._served if self._models[name].built]


def _bound(build: Callable[[str], Segmenter], name: str) -> Callable[[], Segmenter]:
    return lambda: build(name)
