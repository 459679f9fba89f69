"""One sweep over every operations file: each VOICEREEL_* name is a setting and each
voicereel_* metric name one that a live /metrics exports."""

from __future__ import annotations

import re

from tests.deploy.conftest import DEPLOY, METRIC_NAME, ROOT, is_setting

FILES = sorted([p for p in DEPLOY.rglob("*") if p.is_file()]
               + list((ROOT / ".github").rglob("*.yml"))
               + [ROOT / "docs" / "scaling.md", ROOT / "README.md"])


def test_the_sweep_sees_every_kind_of_file() -> None:
    suffixes = {p.suffix for p in FILES}
    assert {".yml", ".yaml", ".json", ".md"} <= suffixes
    assert len(FILES) > 30


def test_every_setting_name_is_a_setting() -> None:
    # The README also names the client's variables (VOICEREEL_URL, VOICEREEL_API_KEY): not
    # service settings, so it is left out here (tests/unit/test_deploy.py covers the guide).
    # The test suite's own variables are read by tests/conftest.py.
    test_variables = set(re.findall(r"VOICEREEL_TEST_[A-Z0-9_]+",
                                    (ROOT / "tests" / "conftest.py").read_text()))
    unknown = {(str(p.relative_to(ROOT)), name) for p in FILES if p.name != "README.md"
               or p.parent != ROOT for name in re.findall(r"VOICEREEL_[A-Z0-9_]+", p.read_text())
               if not is_setting(name) and name not in test_variables}
    assert unknown == set()


def test_every_metric_name_is_exported(exported_metrics: dict[str, str]) -> None:
    named: dict[str, set[str]] = {}
    for path in FILES:
        for name in METRIC_NAME.findall(path.read_text()):
            named.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    # Families are named bare in prose (`voicereel_job_duration_seconds`), samples in queries.
    unknown = {name: files for name, files in named.items() if name not in exported_metrics
               and not any(name + suffix in exported_metrics for suffix in ("_total", "_bucket"))}
    assert unknown == {}
    assert len(named) >= 15
