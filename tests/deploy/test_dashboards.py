"""deploy/grafana, deploy/loki and the compose services that run them: every query names a
metric /metrics exports, every file the compose file mounts exists, request ids stay fields."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY, METRIC_NAME, PROMETHEUS, PROMETHEUS_SERIES

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "voicereel.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"


def _panels() -> list[dict[str, Any]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "voicereel" and dashboard["title"]
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _datasources() -> dict[str, str]:
    config = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    return {source["uid"]: source["type"] for source in config["datasources"]}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def _recorded() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS / "rules" / "voicereel.rules.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def test_every_prometheus_query_names_an_exported_metric(
        exported_metrics: dict[str, str]) -> None:
    sources = _datasources()
    queries = 0
    for panel in _panels():
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in sources, panel["title"]
            if sources[target["datasource"]["uid"]] != "prometheus":
                continue
            queries += 1
            expr = target["expr"]
            names = METRIC_NAME.findall(expr)
            recorded = re.findall(r"\bvoicereel:[a-z0-9_:]+", expr)
            builtin = re.findall(r"\b(up)\{", expr)
            assert names or recorded or builtin, expr
            for name in names:
                assert name in exported_metrics, (panel["title"], name)
            assert set(recorded) <= _recorded(), expr
            assert set(builtin) <= PROMETHEUS_SERIES
            for job in re.findall(r'job="([^"]+)"', expr):
                assert job in {"voicereel-api", "voicereel-worker"}
    assert queries >= 15


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = " ".join(t["expr"] for p in _panels() for t in p["targets"])
    for needed in ("voicereel_http_requests_total", "voicereel_http_request_duration_seconds",
                   'status=~"5.."', "voicereel_jobs", "voicereel_queue_depth",
                   "voicereel_queue_oldest_age_seconds", "voicereel_engine_real_time_factor",
                   'up{job="voicereel-worker"}'):
        assert needed in exprs, needed
    ids = [p["id"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_log_queries_use_only_the_labels_promtail_sets() -> None:
    promtail = yaml.safe_load((DEPLOY / "loki" / "promtail.yml").read_text())
    [job] = promtail["scrape_configs"]
    labels = {r["target_label"] for r in job["relabel_configs"]}
    for stage in job["pipeline_stages"]:
        labels |= set(stage.get("labels") or {})
    # Unbounded ids are fields of the JSON line, never stream labels.
    assert not labels & {"request_id", "job_id"}
    assert labels == {"service", "project", "level"}
    sources = _datasources()
    log_panels = 0
    for panel in _panels():
        for target in panel["targets"]:
            if sources[target["datasource"]["uid"]] == "loki":
                log_panels += 1
                selector = re.match(r"\{([^}]*)\}", target["expr"])
                assert selector, target["expr"]
                used = set(re.findall(r"(\w+)\s*=~?", selector.group(1)))
                assert used <= labels, used
                assert "| json" in target["expr"]
    assert log_panels >= 1
    # The level the pipeline promotes is a field our JSON lines really have.
    import logging

    from voicereel.observability import JsonFormatter

    line = json.loads(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})))
    assert {"level", "time", "message"} <= set(line)


def test_compose_runs_prometheus_grafana_loki_and_promtail_with_the_repository_files() -> None:
    services = _compose()["services"]
    assert {"prometheus", "grafana", "loki", "promtail"} <= set(services)
    for name in ("prometheus", "grafana", "loki", "promtail"):
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), (name, source)
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/dashboards"] == path
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{DASHBOARD.name}"
    # The data sources point at the compose services.
    config = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    for source in config["datasources"]:
        host = re.match(r"http://([\w-]+):", source["url"])
        assert host and host.group(1) in services, source["url"]
    # Prometheus loads the rules the tests check, from where compose mounts them.
    prometheus = services["prometheus"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in prometheus["volumes"]
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    targets = {t for job in scrape["scrape_configs"] for c in job.get("static_configs", [])
               for t in c["targets"]}
    targets |= {f"{n}:{c['port']}" for job in scrape["scrape_configs"]
                for c in job.get("dns_sd_configs", []) for n in c["names"]}
    worker_port = services["worker"]["environment"]["VOICEREEL_WORKER_METRICS_PORT"]
    assert targets == {"api:8000", f"worker:{worker_port}"}
    promtail = yaml.safe_load((DEPLOY / "loki" / "promtail.yml").read_text())
    loki = re.match(r"http://([\w-]+):", promtail["clients"][0]["url"])
    assert loki and loki.group(1) == "loki"


def test_every_deploy_file_parses() -> None:
    for path in DEPLOY.rglob("*"):
        if path.suffix in (".yml", ".yaml"):
            list(yaml.safe_load_all(path.read_text()))
        elif path.suffix == ".json":
            json.loads(path.read_text())
    assert Path(DASHBOARD).exists()
