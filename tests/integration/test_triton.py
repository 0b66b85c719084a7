"""The Triton segmenter against real Triton servers: readiness, outages, timeouts, the CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline import bootstrap
from pipeline.adapters.segmenters.onnx_graph import sample_images
from pipeline.adapters.segmenters.triton_client import TritonSegmenter
from pipeline.adapters.segmenters.triton_dev_server import READY
from pipeline.errors import (
    InferenceUnavailable,
    ModelError,
    ModelNotServed,
    OperationTimeout,
    UsageError,
)
from pipeline.models import U2NETP, sha256_of
from pipeline.settings import Settings
from pipeline.triton_launch import triton_python, uint8_graph
from tests.modelkit import tiny_spec, u2net_like, uint8_identity
from tests.tritonkit import TritonServer, free_port

CLIPLINE = str(Path(sys.executable).with_name("clipline"))
SIZE = U2NETP.input_size
PROTOCOLS = ["grpc", "http"]


def _url(server: TritonServer, protocol: str) -> str:
    return server.url if protocol == "grpc" else server.http_url


def _image() -> np.ndarray:
    return sample_images(SIZE, 1)


# -- readiness --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nothing_listening_is_unavailable_and_names_the_address(protocol: str) -> None:
    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(InferenceUnavailable, match=f"Triton at {url} .*is not reachable") as err:
        TritonSegmenter(url, "u2netp", protocol=protocol, timeout=5)
    assert err.value.transient


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model_is_unavailable_with_a_clear_message(
    triton: TritonServer, protocol: str
) -> None:
    with pytest.raises(InferenceUnavailable) as err:
        TritonSegmenter(_url(triton, protocol), "u2net", protocol=protocol)
    message = str(err.value)
    assert f"Triton at {_url(triton, protocol)}" in message
    assert "has no ready model 'u2net' (version latest)" in message
    # pytriton restricts the model-repository API, so the list of served models is not shown.
    assert "it is not loaded" in message


@pytest.mark.slow
def test_unknown_version_is_unavailable(triton: TritonServer) -> None:
    with pytest.raises(InferenceUnavailable, match=r"no ready model 'u2netp' \(version 7\)"):
        TritonSegmenter(triton.url, "u2netp", model_version="7")


@pytest.mark.slow
def test_served_size_must_match_the_spec(triton: TritonServer) -> None:
    with pytest.raises(ModelError, match="takes 320x320 images; the model spec says 32x32"):
        TritonSegmenter(triton.url, "u2netp", expected_size=(32, 32))


@pytest.fixture(scope="module")
def float_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A server whose model takes float32 NCHW: the original export, not the uint8 rewrite."""
    folder = tmp_path_factory.mktemp("float-model")
    model = u2net_like(folder / "tiny.onnx")
    with TritonServer(model, "tiny", max_batch_size=1, log_dir=folder) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_float32_model_is_refused_with_what_to_serve(
    float_triton: TritonServer, protocol: str
) -> None:
    with pytest.raises(ModelError) as err:
        TritonSegmenter(_url(float_triton, protocol), "tiny", protocol=protocol)
    message = str(err.value)
    assert "model 'tiny' on Triton at" in message and "takes FP32 [-1, 3, 32, 32]" in message
    assert "Clipline sends uint8 — serve the uint8 graph (clipline triton serve" in message
    assert not err.value.transient


# -- outages and deadlines --------------------------------------------------------------------


def _eventually(predict: Callable[[], np.ndarray], seconds: float) -> np.ndarray:
    """Retry as a worker would (a restarted server's connection may need a moment)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return predict()
        except InferenceUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_stopped_server_is_unavailable_and_serves_again_after_a_restart(
    triton: TritonServer,
) -> None:
    clients = [
        TritonSegmenter(triton.url, "u2netp"),
        TritonSegmenter(triton.http_url, "u2netp", protocol="http"),
    ]
    image = _image()
    for client in clients:
        assert client.predict(image).shape == (1, *SIZE)
    triton.stop()
    try:
        for client in clients:
            with pytest.raises(InferenceUnavailable, match="Triton at") as err:
                client.predict(image)
            assert err.value.transient
    finally:
        triton.start()
    for client in clients:
        assert _eventually(lambda c=client: c.predict(image), 5.0).shape == (1, *SIZE)
        client.close()


@pytest.fixture(scope="module")
def slow_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A uint8 model that answers only after 3 s per batch."""
    folder = tmp_path_factory.mktemp("slow-model")
    model = uint8_identity(folder / "identity.uint8.onnx", postprocess="min_max")
    with TritonServer(model, "slow", delay_ms=3000, log_dir=folder) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_slow_model_times_out(slow_triton: TritonServer, protocol: str) -> None:
    client = TritonSegmenter(
        _url(slow_triton, protocol), "slow", protocol=protocol, timeout=0.5
    )
    began = time.monotonic()
    with pytest.raises(OperationTimeout, match="Triton at") as err:
        client.predict(np.zeros((1, 8, 8, 3), np.uint8))
    assert time.monotonic() - began < 2.5
    assert err.value.transient
    client.close()


# -- composition root and command line ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bootstrap_builds_a_working_triton_segmenter(
    triton: TritonServer, models_dir: Path, tmp_path: Path, protocol: str
) -> None:
    settings = Settings(
        data_dir=tmp_path, models_dir=models_dir, segmenter="triton",
        triton_url=_url(triton, protocol), triton_protocol=protocol,
        triton_timeout_seconds=60,
    )
    segmenter = bootstrap.segmenter(settings)
    assert isinstance(segmenter, TritonSegmenter)
    assert segmenter.model_name == "u2netp" and segmenter.input_size == SIZE
    masks = segmenter.predict(np.repeat(_image(), 2, axis=0))
    assert masks.shape == (2, *SIZE)
    np.testing.assert_array_equal(masks[0], masks[1])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_server_serves_each_served_model_under_its_own_name(
    u2netp_uint8: Path, models_dir: Path, tmp_path: Path
) -> None:
    # u2netp's graph stands in for u2net (the same input size): two models for the price of one.
    with TritonServer(u2netp_uint8, more={"u2net": u2netp_uint8}, log_dir=tmp_path) as server:
        settings = Settings(
            data_dir=tmp_path, models_dir=models_dir, segmenter="triton", model="u2netp",
            served_models="u2netp,u2net", triton_url=server.url, triton_timeout_seconds=60,
        )
        models = bootstrap.segmenters(settings)
        assert models.built() == []  # nothing is built before a job asks
        for name in ("u2net", "u2netp"):
            assert models.get(name).predict(_image()).shape == (1, *SIZE)
        assert models.built() == ["u2netp", "u2net"]
        with pytest.raises(ModelNotServed, match="served: u2netp, u2net"):
            models.get("isnet-general-use")


def test_serve_help_explains_the_command() -> None:
    done = subprocess.run([CLIPLINE, "triton", "serve", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "--grpc-port" in done.stdout and "--delay-ms" in done.stdout
    assert "CLIPLINE_SEGMENTER=triton" in done.stdout


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_serve_runs_in_the_foreground_and_ctrl_c_stops_it(
    u2netp_uint8: Path, models_dir: Path, tmp_path: Path
) -> None:
    ports = {name: str(free_port()) for name in ("--grpc-port", "--http-port", "--metrics-port")}
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir), "CLIPLINE_DATA_DIR": str(tmp_path)}
    with log_path.open("wb") as log:
        command = subprocess.Popen(
            [CLIPLINE, "triton", "serve", *[x for kv in ports.items() for x in kv]],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    servers: list[int] = []
    stopped = False
    try:
        deadline = time.monotonic() + 90
        while READY not in log_path.read_text() and time.monotonic() < deadline:
            assert command.poll() is None, log_path.read_text()
            time.sleep(0.2)
        servers = _children(command.pid)
        client = TritonSegmenter(f"127.0.0.1:{ports['--grpc-port']}", "u2netp")
        assert client.predict(_image()).shape == (1, *SIZE)
        client.close()
        os.killpg(command.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert command.wait(60) == 0, log_path.read_text()[-3000:]
        # Nothing of the server's outlives the command (multiprocessing's resource tracker, the
        # last to go, exits a moment after its parent).
        stopped = bool(servers) and all(_gone(pgid, 10) for pgid in servers)
    finally:
        for pgid in [command.pid, *servers]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        command.wait()
    assert stopped, f"server process groups {servers} outlived the command"


# -- the launcher -------------------------------------------------------------------------------


def test_a_missing_triton_environment_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"run scripts/triton-venv\.sh"):
        triton_python(tmp_path / ".venv-triton")


def test_the_uint8_graph_is_exported_when_missing(tmp_path: Path) -> None:
    source = u2net_like(tmp_path / "tiny.onnx")
    spec = tiny_spec(sha256=sha256_of(source))
    exported = uint8_graph(spec, tmp_path)
    assert exported == tmp_path / "tiny.uint8.onnx"
    assert uint8_graph(spec, tmp_path) == exported  # present and verified: used as it is


def test_translation_of_server_statuses() -> None:
    from tritonclient.utils import InferenceServerException

    from pipeline.adapters.segmenters.triton_client import _translate

    cases = {
        "StatusCode.UNAVAILABLE": InferenceUnavailable,
        "StatusCode.DEADLINE_EXCEEDED": OperationTimeout,
        "StatusCode.INVALID_ARGUMENT": ModelError,
        "StatusCode.INTERNAL": InferenceUnavailable,
        "400": ModelError,
        "404": InferenceUnavailable,
        "503": InferenceUnavailable,
        "504": OperationTimeout,
    }
    for status, kind in cases.items():
        error = _translate(InferenceServerException("boom", status=status), "Triton at x")
        assert type(error) is kind, status
        assert str(error) == "Triton at x: boom"
