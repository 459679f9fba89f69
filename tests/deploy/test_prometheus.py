"""deploy/prometheus: promtool checks and unit tests, every alert tested and in the runbook,
every metric one that /metrics really exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import (
    DEPLOY,
    METRIC_NAME,
    PROMETHEUS,
    PROMETHEUS_SERIES,
    load_all,
    tool,
)
from voicereel.settings import Settings

RULES = PROMETHEUS / "rules" / "voicereel.rules.yml"
RUNBOOK = DEPLOY / "RUNBOOK.md"
RUNBOOK_URL = "https://github.com/example/voicereel/blob/main/deploy/RUNBOOK.md#"
SCRAPE_JOBS = {"voicereel-api", "voicereel-worker"}


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=False, cwd=PROMETHEUS)


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    result = _promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests)


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules whose backlog threshold is off must fail."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(
        RULES.read_text().replace("max(voicereel_queue_oldest_age_seconds) > 300",
                                  "max(voicereel_queue_oldest_age_seconds) > 3000"))
    for test in (PROMETHEUS / "tests").glob("*.yml"):
        (tmp_path / "tests" / test.name).write_text(test.read_text())
    result = subprocess.run([tool("promtool"), "test", "rules",
                             *sorted(str(p) for p in (tmp_path / "tests").glob("*.yml"))],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert "VoiceReelQueueBacklogOld" in result.stdout + result.stderr


def test_every_alert_fires_in_a_unit_test_and_stays_quiet_in_one() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == ["../rules/voicereel.rules.yml"]
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == set(_alerts())
    assert quiet == set(_alerts())


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_its_own_runbook_section() -> None:
    anchors = {_slug(line[3:]) for line in RUNBOOK.read_text().splitlines()
               if line.startswith("## ")}
    for name, alert in _alerts().items():
        assert alert["labels"]["severity"] in ("page", "ticket"), name
        url = alert["annotations"]["runbook_url"]
        assert url == RUNBOOK_URL + _slug(name), name
        assert _slug(name) in anchors, name
        assert alert["annotations"]["summary"], name


def test_every_metric_is_one_the_app_exports(exported_metrics: dict[str, str]) -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    exprs = [rule["expr"] for rule in _rules()]
    for document in load_all(DEPLOY / "kubernetes" / "prometheus-adapter" / "values.yaml"):
        exprs += [rule["seriesQuery"] for rule in document["rules"]["external"]]
    for expr in exprs:
        for name in METRIC_NAME.findall(expr):
            assert name in exported_metrics, (name, expr)
        for name in re.findall(r"\bvoicereel:[a-z0-9_:]+", expr):
            assert name in recorded, name
        for name in re.findall(r"\b(up|scrape_[a-z_]+)\{", expr):
            assert name in PROMETHEUS_SERIES
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in SCRAPE_JOBS, job
    # The histograms the SLO reads have the bucket the rules name.
    assert 'le="1.0"' in RULES.read_text()


def test_the_latency_slo_bucket_is_a_bucket_of_the_histogram() -> None:
    from voicereel.observability import JOB_DURATION_PER_AUDIO_SECOND

    buckets = {s.labels["le"] for metric in JOB_DURATION_PER_AUDIO_SECOND.collect()
               for s in metric.samples if s.name.endswith("_bucket")}
    assert set(re.findall(r'voicereel_job_duration_per_audio_second_bucket\{le="([^"]+)"\}',
                          RULES.read_text())) <= buckets


def test_the_runbook_names_only_real_settings() -> None:
    for path in (RUNBOOK, DEPLOY / "kubernetes" / "README.md"):
        for name in set(re.findall(r"VOICEREEL_[A-Z0-9_]+", path.read_text())):
            assert name.removeprefix("VOICEREEL_").lower() in Settings.model_fields, (path, name)


def test_the_scrape_configs_name_the_jobs_the_rules_use() -> None:
    compose = _promtool("check", "config", "prometheus.yml")
    assert compose.returncode == 0, compose.stdout + compose.stderr
    for name in ("prometheus.yml", "kubernetes-scrape.yml"):
        config = yaml.safe_load((PROMETHEUS / name).read_text())
        assert {job["job_name"] for job in config["scrape_configs"]} == SCRAPE_JOBS, name
    # Debian's promtool is built without Kubernetes discovery, so the Kubernetes jobs are
    # checked here by structure: each keeps the pods of its component and its metrics port.
    pods = {doc["metadata"]["name"]: doc for doc in load_all(
        DEPLOY / "kubernetes" / "base" / "api.yaml") + load_all(
        DEPLOY / "kubernetes" / "base" / "worker.yaml") if doc["kind"] == "Deployment"}
    config = yaml.safe_load((PROMETHEUS / "kubernetes-scrape.yml").read_text())
    for job in config["scrape_configs"]:
        component = job["job_name"].removeprefix("voicereel-")
        template = pods[job["job_name"]]["spec"]["template"]
        keeps = [r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"]
        assert f"voicereel;{component}" in keeps
        labels = template["metadata"]["labels"]
        assert (labels["app.kubernetes.io/name"], labels["app.kubernetes.io/component"]) == (
            "voicereel", component)
        ports = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert any(regex in ports for regex in keeps), (job["job_name"], keeps)
        assert "namespace" in {r.get("target_label") for r in job["relabel_configs"]}
