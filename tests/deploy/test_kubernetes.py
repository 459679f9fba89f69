"""deploy/kubernetes: schema-valid, renders, and agrees with the settings, the CLI, the metrics
and the worker's shutdown."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from click.testing import CliRunner

from tests.deploy.conftest import K8S, is_setting, load_all, tool
from voicereel.cli import main
from voicereel.settings import Settings

# The oldest Kubernetes minor the manifests promise to work on (autoscaling/v2 and policy/v1
# are GA since 1.23 and 1.21; this is what current managed clusters offer).
KUBERNETES_VERSION = "1.29"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def _manifest_files() -> list[Path]:
    files = sorted(p for p in K8S.rglob("*.yaml") if p.parent.name != "prometheus-adapter")
    assert len(files) > 10
    return files


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] in WORKLOADS}


def _containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, c) for name, template in _pod_specs(docs).items()
            for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]]


def _validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_is_valid(path: Path) -> None:
    for doc in load_all(path):
        if doc["kind"] == "Kustomization":
            assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
            continue
        if path.parent.name == "production" and path.name != "namespace.yaml":
            continue  # a strategic-merge patch: validated in the rendered overlay
        _validate(doc)


def test_the_validator_rejects_a_broken_manifest() -> None:
    doc = load_all(K8S / "base" / "api.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc)
    doc = load_all(K8S / "base" / "worker-hpa.yaml")[0]
    doc["spec"]["minReplica"] = 2  # a typo: strict mode refuses unknown fields
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc)


def test_the_overlays_render_and_every_object_is_valid(
        rendered_production: list[dict[str, Any]]) -> None:
    kubectl = tool("kubectl")
    base = subprocess.run([kubectl, "kustomize", str(K8S / "base")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert base.returncode == 0, base.stderr
    kinds = {doc["kind"] for doc in rendered_production}
    assert {"Deployment", "StatefulSet", "Job", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy", "ConfigMap", "Service"} <= kinds
    assert "Secret" not in kinds  # referenced by name, never rendered from the repository
    for doc in rendered_production:
        _validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "voicereel", doc["metadata"]["name"]
    images = {c["image"] for _, c in _containers(rendered_production)}
    assert "ghcr.io/example/voicereel:0.1.0" in images
    assert not any(image == "voicereel" for image in images)  # the image rewrite applied


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(_by_kind(docs, "ConfigMap")["voicereel-config"]["data"])


def test_every_variable_is_a_setting_and_the_production_config_validates(
        rendered_production: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_all(K8S / "base" / "secret.example.yaml")[0]
    config = _config(rendered_production)
    for name in [*config, *example["stringData"]]:
        assert is_setting(name) or name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), name
    for _, container in _containers(rendered_production):
        for env in container.get("env", []):
            assert not env["name"].startswith("VOICEREEL_") or is_setting(env["name"])
    # Placeholders only: every secret value is a <...> hint, never something usable.
    assert all(re.search(r"<[^>]+>", value) for value in example["stringData"].values())
    for name, value in {**config, **example["stringData"]}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VOICEREEL_SIGNING_SECRET", "x" * 64)
    settings = Settings()
    assert (settings.env, settings.runner, settings.storage, settings.engine) == (
        "production", "celery", "s3", "fish-speech")
    assert settings.log_format == "json" and settings.worker_metrics_port == 9100


def test_every_pod_takes_its_settings_from_the_config_and_the_secret(
        rendered_production: list[dict[str, Any]]) -> None:
    secret = load_all(K8S / "base" / "secret.example.yaml")[0]["metadata"]["name"]
    for name, container in _containers(rendered_production):
        if not container["image"].startswith("ghcr.io/example/voicereel"):
            continue
        sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"voicereel-config", secret}, name


def test_every_voicereel_command_is_one_the_cli_has(
        rendered_production: list[dict[str, Any]]) -> None:
    commands = {name: c["command"] for name, c in _containers(rendered_production)
                if c["image"].startswith("ghcr.io/example/voicereel")}
    assert commands["voicereel-migrate"] == ["voicereel", "migrate"]
    assert commands["voicereel-api"][:2] == ["voicereel", "serve"]
    assert commands["voicereel-worker"][:2] == ["voicereel", "worker"]
    for command in commands.values():
        result = CliRunner().invoke(main, [*command[1:], "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_fish_speech_urls_name_every_server_pod(
        rendered_production: list[dict[str, Any]]) -> None:
    servers = _by_kind(rendered_production, "StatefulSet")["fish-speech"]
    service = servers["spec"]["serviceName"]
    assert _by_kind(rendered_production, "Service")[service]["spec"]["clusterIP"] == "None"
    port = servers["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    urls = _config(rendered_production)["VOICEREEL_FISH_SPEECH_URLS"].split(",")
    assert urls == [f"http://fish-speech-{i}.{service}:{port}"
                    for i in range(servers["spec"]["replicas"])]
    assert len(urls) >= 2
    for _, container in _containers([servers]):
        if container["name"] == "fish-speech":
            for part in ("requests", "limits"):
                assert container["resources"][part]["nvidia.com/gpu"] == 1


def test_probes_resources_and_non_root(rendered_production: list[dict[str, Any]]) -> None:
    api = _by_kind(rendered_production, "Deployment")["voicereel-api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for name, template in _pod_specs(rendered_production).items():
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert template["spec"]["automountServiceAccountToken"] is False, name
    for name, c in _containers(rendered_production):
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
        assert "memory" in c["resources"]["limits"], name


def test_grace_periods_agree_with_the_shutdown_the_settings_imply(
        rendered_production: list[dict[str, Any]]) -> None:
    settings = Settings(**{k.removeprefix("VOICEREEL_").lower(): v
                           for k, v in _config(rendered_production).items()
                           if k != "VOICEREEL_ENV"})
    pods = _pod_specs(rendered_production)
    worker = pods["voicereel-worker"]["spec"]
    # A running line must finish: the slowest line is one fish-speech read plus its connect.
    slowest_line = settings.fish_speech_read_timeout + settings.fish_speech_connect_timeout
    assert worker["terminationGracePeriodSeconds"] > slowest_line
    # Celery's warm shutdown is what waits for it (SIGTERM, not SIGQUIT: no preStop kill).
    assert "lifecycle" not in worker["containers"][0]
    # A killed coordinator's job is resumed once its lease runs out, long before its job could
    # reach the time limit that would fail it.
    assert (worker["terminationGracePeriodSeconds"] + settings.job_lease_seconds
            < settings.max_job_seconds)
    api = pods["voicereel-api"]["spec"]
    pause = int(api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert api["terminationGracePeriodSeconds"] > pause + settings.decode_timeout_seconds
    servers = pods["fish-speech"]["spec"]
    assert servers["terminationGracePeriodSeconds"] > settings.fish_speech_read_timeout
    # /readyz may wait one connect timeout on a busy fish-speech server before it answers.
    readiness = api["containers"][0]["readinessProbe"]
    assert readiness["timeoutSeconds"] > settings.fish_speech_connect_timeout


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"])
        if expression["operator"] == "In" and present not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and present in expression["values"]:
            return False
    return True


def _reachers(docs: list[dict[str, Any]], target: dict[str, str], port: int) -> set[str]:
    """Workloads whose pods may open `port` on a pod labelled `target`, by the policies."""
    policies = [p for p in _by_kind(docs, "NetworkPolicy").values()
                if _selects(p["spec"]["podSelector"], target)]
    assert policies, target
    allowed = set()
    for name, template in _pod_specs(docs).items():
        labels = template["metadata"]["labels"]
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                ports = {p["port"] for p in rule.get("ports", [])}
                if ports and port not in ports:
                    continue
                sources = rule.get("from")
                if sources is None or any("podSelector" in s and "namespaceSelector" not in s
                                          and _selects(s["podSelector"], labels)
                                          for s in sources):
                    allowed.add(name)
    return allowed


def test_network_policies(rendered_production: list[dict[str, Any]]) -> None:
    docs = rendered_production
    everyone = set(_pod_specs(docs))
    assert _reachers(docs, {"app.kubernetes.io/name": "postgresql"}, 5432) == {
        "voicereel-api", "voicereel-worker", "voicereel-migrate"}
    assert _reachers(docs, {"app.kubernetes.io/name": "redis"}, 6379) == {
        "voicereel-api", "voicereel-worker"}
    servers = _pod_specs(docs)["fish-speech"]["metadata"]["labels"]
    # The API only for its readiness check (see base/networkpolicy.yaml).
    assert _reachers(docs, servers, 8080) == {"voicereel-worker", "voicereel-api"}
    api = _pod_specs(docs)["voicereel-api"]["metadata"]["labels"]
    assert _reachers(docs, api, 8000) == everyone
    worker = _pod_specs(docs)["voicereel-worker"]["metadata"]["labels"]
    assert _reachers(docs, worker, 9100) == set()  # the monitoring namespace only
    deny = _by_kind(docs, "NetworkPolicy")["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_disruption_budgets_cover_every_long_running_workload(
        rendered_production: list[dict[str, Any]]) -> None:
    budgets = _by_kind(rendered_production, "PodDisruptionBudget").values()
    for name, template in _pod_specs(rendered_production).items():
        if name == "voicereel-migrate":
            continue
        assert any(_selects(b["spec"]["selector"], template["metadata"]["labels"])
                   for b in budgets), name


def test_the_worker_autoscaler_reads_a_metric_the_adapter_serves_from_metrics(
        rendered_production: list[dict[str, Any]], exported_metrics: dict[str, str]) -> None:
    hpa = _by_kind(rendered_production, "HorizontalPodAutoscaler")["voicereel-worker"]["spec"]
    target = hpa["scaleTargetRef"]
    assert target["name"] in _by_kind(rendered_production, target["kind"])
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 40)  # the production patch applied
    [metric] = hpa["metrics"]
    assert metric["type"] == "External"
    name = metric["external"]["metric"]["name"]
    assert exported_metrics[name] == "gauge"
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"source": "database"}
    adapter = load_all(K8S / "prometheus-adapter" / "values.yaml")[0]
    served = [rule for rule in adapter["rules"]["external"] if rule["name"]["as"] == name]
    assert len(served) == 1
    assert re.match(rf"{name}\{{", served[0]["seriesQuery"])
    assert "max(" in served[0]["metricsQuery"]  # every API pod reports the same database count


def test_the_migration_runs_before_the_api(rendered_production: list[dict[str, Any]]) -> None:
    job = _by_kind(rendered_production, "Job")["voicereel-migrate"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    # The kubectl path of the README applies first what its selector picks: the Job and
    # everything the Job's pod needs, and no long-running workload.
    guide = (K8S / "README.md").read_text()
    [components] = re.findall(r"-l 'app\.kubernetes\.io/component in \(([\w,]+)\)'", guide)
    first = {(d["kind"], d["metadata"]["name"]) for d in rendered_production
             if d["metadata"].get("labels", {}).get("app.kubernetes.io/component")
             in components.split(",")}
    pod = job["spec"]["template"]["spec"]
    needs = {("Job", "voicereel-migrate"), ("Namespace", "voicereel"),
             ("ServiceAccount", pod["serviceAccountName"])}
    needs |= {("ConfigMap", s["configMapRef"]["name"]) for c in pod["containers"]
              for s in c["envFrom"] if "configMapRef" in s}
    assert first == needs
    assert "kubectl -n voicereel wait --for=condition=complete job/voicereel-migrate" in guide
    assert pod["restartPolicy"] == "Never"
