"""Serving several models side by side: the setting, the worker's registry, the job's choice.

The API's side (422 ``model_not_served``, 202 with a chosen model) is in test_api_models.py; a
real Triton serving two models in tests/integration/test_triton.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline import bootstrap
from pipeline.adapters.segmenters import triton_dev_server
from pipeline.adapters.segmenters.fake import FakeSegmenter, FakeSegmenters
from pipeline.errors import InferenceUnavailable, InvalidSettings, ModelNotServed
from pipeline.event_rules import EventRules
from pipeline.jobs import JobSpec, JobStatus
from pipeline.model_registry import ModelRegistry
from pipeline.models import DEFAULT_MODEL, check_served, parse_model_list
from pipeline.settings import Settings
from pipeline.triton_launch import ServeOptions, server_command
from pipeline.worker import Outcome
from tests.unit.test_worker import World, red_square

# -- the setting ------------------------------------------------------------------------------


def test_by_default_a_deployment_serves_its_default_model_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CLIPLINE_MODEL", raising=False)
    assert Settings().served == (DEFAULT_MODEL,)
    assert Settings(model="u2net").served == ("u2net",)


def test_served_models_put_the_default_first_and_drop_blanks_and_repeats() -> None:
    settings = Settings(model="u2net", served_models=" u2netp, u2net,,u2netp ")
    assert settings.served == ("u2net", "u2netp")


def test_served_models_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPLINE_MODEL", "u2netp")
    monkeypatch.setenv("CLIPLINE_SERVED_MODELS", "u2net,u2netp")
    assert Settings().served == ("u2netp", "u2net")


@pytest.mark.parametrize(("env", "field", "message"), [
    ({"CLIPLINE_SERVED_MODELS": "u2netp,u2net-xl"}, "served_models",
     "unknown model 'u2net-xl'; known models: u2netp"),
    ({"CLIPLINE_MODEL": "u2netp", "CLIPLINE_SERVED_MODELS": "u2net"}, "served_models",
     "the default model 'u2netp' (CLIPLINE_MODEL) is not among the served models u2net"),
    ({"CLIPLINE_MODEL": "u2-net"}, "model", "unknown model 'u2-net'"),
    ({"CLIPLINE_MODEL": "u2net,u2netp"}, "model", "one model name expected"),
], ids=["unknown-served", "default-not-served", "unknown-default", "a-list-as-default"])
def test_a_bad_model_setting_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str, message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    error = info.value.errors()[0]
    assert error["loc"] == (field,)
    assert message in error["msg"]


def test_check_served_names_the_served_models() -> None:
    assert check_served("u2net", ("u2netp", "u2net")) == "u2net"
    with pytest.raises(ModelNotServed, match=r"'u2net' is not served here; served: u2netp$"):
        check_served("u2net", ("u2netp",))
    assert ModelNotServed.reason == "model_not_served" and not ModelNotServed.transient
    assert parse_model_list("u2net-uint8, u2netp") == ("u2net-uint8", "u2netp")


# -- the registry -----------------------------------------------------------------------------


class Builds:
    """A ``build(name)`` that counts, and fails for the names in ``down``."""

    def __init__(self, *down: str) -> None:
        self.calls: list[str] = []
        self.down = set(down)

    def __call__(self, name: str) -> FakeSegmenter:
        self.calls.append(name)
        if name in self.down:
            raise InferenceUnavailable(f"Triton has no ready model {name!r}")
        return FakeSegmenter((32, 32))


def registry(builds: Builds, *served: str) -> ModelRegistry:
    return ModelRegistry(served or ("u2net", "u2netp"), builds, lambda name: (32, 32))


def test_the_registry_builds_a_model_on_its_first_prediction_and_only_once() -> None:
    builds = Builds()
    models = registry(builds)
    assert (models.served, models.default) == (("u2net", "u2netp"), "u2net")
    small = models.get("u2netp")
    assert builds.calls == [] and small.input_size == (32, 32)  # known before building
    image = np.zeros((1, 32, 32, 3), np.uint8)
    small.predict(image)
    models.get("u2netp").predict(image)
    assert builds.calls == ["u2netp"] and models.built() == ["u2netp"]


def test_the_registry_refuses_a_model_it_does_not_serve_without_building_anything() -> None:
    builds = Builds()
    with pytest.raises(ModelNotServed, match="served: u2net, u2netp"):
        registry(builds).get("isnet-general-use")
    assert builds.calls == []


def test_a_model_that_cannot_be_built_fails_its_jobs_and_is_tried_again_later() -> None:
    builds = Builds("u2net")
    models = registry(builds)
    with pytest.raises(InferenceUnavailable):
        models.warm()  # the default
    builds.down.clear()  # Triton is back
    assert models.warm() is models.warm()
    assert builds.calls == ["u2net", "u2net"]


def test_two_threads_asking_for_a_new_model_build_it_once() -> None:
    builds = Builds()
    models = registry(builds)
    threads = [threading.Thread(target=models.warm, args=("u2netp",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert builds.calls == ["u2netp"]


def test_bootstrap_serves_every_served_model_of_the_settings() -> None:
    settings = Settings(segmenter="fake", model="u2netp", served_models="u2net,u2netp")
    models = bootstrap.segmenters(settings)
    assert models.served == ("u2netp", "u2net") and models.built() == []
    assert models.get("u2net").input_size == bootstrap.FAKE_SIZE
    with pytest.raises(ModelNotServed):
        models.get("isnet-general-use")


def test_triton_model_renames_only_the_default_model() -> None:
    plain = Settings(model="u2net", served_models="u2net,u2netp")
    assert [bootstrap.triton_name(plain, m) for m in plain.served] == ["u2net", "u2netp"]
    renamed = Settings(model="u2net", served_models="u2net,u2netp", triton_model="u2net-trt")
    assert [bootstrap.triton_name(renamed, m) for m in renamed.served] == ["u2net-trt", "u2netp"]
    # A uint8 spec is served under its original's name, as Triton's repository has it.
    assert bootstrap.triton_name(Settings(model="u2netp-uint8"), "u2netp-uint8") == "u2netp"


# -- the worker -------------------------------------------------------------------------------


def two_model_world() -> tuple[World, FakeSegmenters]:
    world = World()
    models = FakeSegmenters.serving("u2net", "u2netp")
    world.runner.segmenters = models
    return world, models


def submit(world: World, model: str, key: str = "a.png") -> Any:
    world.store.put("in", key, red_square(), content_type="image/png")
    return world.ledger.submit(JobSpec(bucket="in", key=key, model=model)).job.id


def test_each_job_runs_on_the_model_it_names() -> None:
    world, models = two_model_world()
    large, small = submit(world, "u2net", "a.png"), submit(world, "u2netp", "b.png")
    assert world.runner.run(small) is Outcome.SUCCEEDED
    assert world.runner.run(large) is Outcome.SUCCEEDED
    assert models.asked == ["u2netp", "u2net"]
    for job_id, model in ((large, "u2net"), (small, "u2netp")):
        result = world.ledger.get(job_id).result
        assert result is not None and result["model"] == model
    calls = [getattr(models.models[m], "calls") for m in ("u2net", "u2netp")]  # noqa: B009
    assert calls == [[1], [1]]


def test_a_job_whose_model_this_worker_does_not_serve_is_dead_and_can_be_redriven() -> None:
    world, _ = two_model_world()
    job_id = submit(world, "isnet-general-use")
    assert world.runner.run(job_id) is Outcome.DEAD
    job = world.ledger.get(job_id)
    assert (job.status, job.last_error_code) == (JobStatus.DEAD, "model_not_served")
    assert job.attempts == 1
    assert "served: u2net, u2netp" in (job.last_error_message or "")
    assert world.queue.sent == []  # dead at once: no retry message
    # A worker that serves it now takes the re-driven job.
    assert world.ledger.redrive(ids=[job_id]) == 1
    world.runner.segmenters = FakeSegmenters.serving("u2net", "isnet-general-use")
    assert world.runner.run(job_id) is Outcome.SUCCEEDED


def test_a_model_not_served_does_not_open_the_circuit() -> None:
    world, _ = two_model_world()
    for n in range(5):
        assert world.runner.run(submit(world, "isnet-general-use", f"{n}.png")) is Outcome.DEAD
    assert world.runner.breakers.open_ones() == []
    assert world.runner.run(submit(world, "u2net", "ok.png")) is Outcome.SUCCEEDED


# -- event rules ------------------------------------------------------------------------------


def test_event_rules_default_to_the_default_model_and_refuse_one_not_served() -> None:
    rules = '[[rule]]\nbucket = "bbb"\ntenant = "t"\n'
    assert EventRules.parse(rules).rules[0].model == DEFAULT_MODEL
    served = ("u2net", "u2netp")
    chosen = EventRules.parse(rules + 'model = "u2netp"\n', model="u2net", served=served)
    assert chosen.rules[0].model == "u2netp"
    with pytest.raises(InvalidSettings, match=r"rule 1 \(bbb/\).*'isnet-general-use' is not "
                       r"served here; served: u2net, u2netp \(CLIPLINE_SERVED_MODELS\)"):
        EventRules.parse(rules + 'model = "isnet-general-use"\n', model="u2net", served=served)


# -- the development Triton server's command line -----------------------------------------------


def test_the_dev_server_is_given_every_model_under_its_name(tmp_path: Path) -> None:
    big, small = tmp_path / "u2net.uint8.onnx", tmp_path / "u2netp.uint8.onnx"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    command = server_command({"u2net": big, "u2netp": small}, ServeOptions(), venv=venv)
    assert command[2:6] == ["--model", f"u2net={big}", "--model", f"u2netp={small}"]
    for path in (big, small):
        path.write_bytes(b"onnx")
    args = triton_dev_server._parse(command[2:])
    assert args.models == {"u2net": big, "u2netp": small}
    one = triton_dev_server._parse(["--model-file", str(small), "--model-name", "u2netp"])
    assert one.models == {"u2netp": small}


@pytest.mark.parametrize("argv", [
    [], ["--model", "u2net"], ["--model", "u2net=missing.onnx"],
    ["--model", "u2net=FILE", "--model", "u2net=FILE"], ["--model-file", "FILE"],
], ids=["none", "no-file", "missing-file", "twice", "file-without-name"])
def test_the_dev_server_refuses_a_bad_model_list(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "FILE").write_bytes(b"onnx")
    argv = [a.replace("FILE", str(tmp_path / "FILE")) for a in argv]
    with pytest.raises(SystemExit):
        triton_dev_server._parse(argv)
    err = capsys.readouterr().err
    assert "--model" in err or "does not exist" in err
