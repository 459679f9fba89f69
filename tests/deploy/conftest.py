"""Shared by the deploy tests: the repository's deploy files, tools that must exist in CI, and
the metric names a live app really exports."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from voicereel.api.app import create_app
from voicereel.services import build_services
from voicereel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus"
# The sample names a metric family of each type exposes.
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": (
    "_bucket", "_sum", "_count", "_created"), "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",), "unknown": ("",)}
# Series Prometheus itself makes for every scrape target (no exporter defines them).
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
METRIC_NAME = re.compile(r"\bvoicereel_[a-z0-9_]+\b")


def tool(name: str) -> str:
    """The path of a command-line tool; missing, the test skips here but fails in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (make system-deps installs it)")
        pytest.skip(f"{name} is not installed (CI installs it and never skips)")
    return path


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def is_setting(name: str) -> bool:
    return name.startswith("VOICEREEL_") and (
        name.removeprefix("VOICEREEL_").lower() in Settings.model_fields)


@pytest.fixture(scope="session")
def exported_metrics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every sample name a live app's GET /metrics can expose, mapped to its family's type.

    A labelled family that has seen nothing yet shows only its HELP and TYPE, so the names come
    from the families and their types, not from the samples present.
    """
    data_dir = tmp_path_factory.mktemp("metrics-app")
    services = build_services(Settings(data_dir=data_dir))
    services.db.migrate()
    try:
        with TestClient(create_app(services.settings, services)) as client:
            response = client.get("/metrics")
    finally:
        services.db.dispose()
    assert response.status_code == 200
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(response.text):
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.type
    return names


@pytest.fixture(scope="session")
def rendered_production() -> Iterator[list[dict[str, Any]]]:
    """The production overlay rendered by kustomize (kubectl's built-in)."""
    import subprocess

    kubectl = tool("kubectl")
    result = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / "production")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    yield [doc for doc in yaml.safe_load_all(result.stdout) if doc]
