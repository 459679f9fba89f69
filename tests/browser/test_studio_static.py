"""The Studio's files as served, without a browser: the security headers on every answer, no
inline code the policy would block, no address of another host, and the limits it counts by."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser.conftest import Studio
from voicereel.settings import Settings
from voicereel.studio import CONTENT_SECURITY_POLICY, STATIC_DIR, limits

FILES = sorted(p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file())


def test_the_files_are_the_ones_the_page_loads() -> None:
    assert FILES == ["favicon.svg", "index.html", "js/api.js", "js/app.js", "js/player.js",
                     "js/recorder.js", "js/screenplay.js", "js/zip.js", "studio.css"]


@pytest.mark.parametrize("path", ["", *FILES, "config.json", "no-such-file.js"])
def test_every_answer_carries_the_policy(studio: Studio, path: str) -> None:
    answer = httpx.get(f"{studio.url}{path}")
    assert answer.status_code == (404 if path == "no-such-file.js" else 200)
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"


def test_the_policy_allows_this_origin_only() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY


def test_no_inline_code_and_no_other_host() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.findall(r"<style\b|\sstyle=|\son[a-z]+=", html) == []
    for name in FILES:
        text = (STATIC_DIR / name).read_text()
        # the SVG's XML namespace is a name, not an address the page fetches
        assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", text) == [], name
        assert "eval(" not in text and "innerHTML" not in text, name


def test_the_config_is_the_settings(studio: Studio) -> None:
    served = httpx.get(f"{studio.url}config.json").json()
    assert served == limits(Settings())
    assert served["max_script_lines"] == Settings().max_script_lines
