""".github/workflows/ci.yml: valid against the workflow schema, and the same commands as
.ci/run and the Makefile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.deploy.conftest import DEPLOY, ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    # The schema ships with check-jsonschema: no network.
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_the_workflow_matches_its_schema(tmp_path: Path) -> None:
    result = _check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:", 1))
    assert _check(broken).returncode != 0


def test_it_runs_the_makefile_targets_that_ci_run_runs() -> None:
    jobs = _workflow()["jobs"]
    assert set(jobs) == {"lint", "test", "image"}
    ci_run = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^make (\w[\w-]*)$", ci_run, re.M))
    assert targets == {"test"}
    assert "make lint" in _runs(jobs["lint"])
    assert "make test" in _runs(jobs["test"])
    for target in ("lint", "test", "system-deps"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    # The same PostgreSQL URL as .ci/run, served by the service container.
    [url] = re.findall(r'VOICEREEL_TEST_POSTGRES_URL="([^"]+)"', ci_run)
    test_job = jobs["test"]
    assert test_job["env"]["VOICEREEL_TEST_POSTGRES_URL"] == url
    parts = urlsplit(url.replace("postgresql+psycopg", "postgresql"))
    postgres = test_job["services"]["postgres"]
    assert f"{parts.port}:5432" in postgres["ports"]
    assert postgres["env"]["POSTGRES_DB"] == parts.path.lstrip("/")
    assert parts.username == "postgres" and postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "6379:6379" in test_job["services"]["redis"]["ports"]
    # promtool (tests/deploy) comes from system-deps, which installs only as root.
    assert any(run.startswith("sudo make system-deps") for run in _runs(test_job))
    assert "prometheus" in makefile.split("system-deps:")[1].split("\n\n")[0]


def test_the_image_job_builds_the_dockerfile_as_its_user() -> None:
    runs = "\n".join(_runs(_workflow()["jobs"]["image"]))
    assert "docker build -f deploy/Dockerfile" in runs
    assert (DEPLOY / "Dockerfile").exists()
    [uid] = re.findall(r"--uid (\d+)", (DEPLOY / "Dockerfile").read_text())
    assert f'"$(docker run --rm voicereel:ci id -u)" = {uid}' in runs
    # The Kubernetes pods run as that same user.
    for path in (DEPLOY / "kubernetes" / "base").glob("*.yaml"):
        for found in re.findall(r"runAsUser: (\d+)", path.read_text()):
            assert found == uid, path
