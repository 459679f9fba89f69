"""One real `voicereel serve` and one headless Debian Chromium (Selenium, chromedriver from
/usr/bin: nothing is downloaded) shared by the Studio's browser tests.

The browser's console and network are watched for the whole session: `BrowserWatch.check()`
fails on any console error (save the network lines of the API answers a step expects, e.g. a
401 for a wrong key) and on any request to a URL that is not this server's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.serve import voicereel_serve
from voicereel import operations
from voicereel.services import Services, build_services
from voicereel.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "docs" / "studio"
WIDTH, HEIGHT = 1280, 800
LOCAL_SCHEMES = ("blob:", "data:")


@dataclass
class Studio:
    base_url: str
    key: str  # an owner key of the test's tenant
    tenant: str  # its name
    downloads: Path
    services: Services  # on the server's database, for setting up rows the API would make

    @property
    def url(self) -> str:
        return f"{self.base_url}/studio/"

    def api(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.base_url}/v1{path}", timeout=30,
                             headers={"Authorization": f"Bearer {key or self.key}"}, **kw)


@dataclass
class BrowserWatch:
    """Every console line and requested URL of the session, checked step by step."""

    driver: webdriver.Chrome
    base_url: str
    urls: list[str] = field(default_factory=list)

    def check(self, expected_statuses: tuple[int, ...] = ()) -> None:
        """Fails on a console error (a network line of an answer whose status is in
        `expected_statuses` aside) or a request that left this server."""
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            expected = entry.get("source") == "network" and any(
                f"status of {status} " in entry["message"] for status in expected_statuses)
            if not expected:
                errors.append(entry["message"])
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.urls.append(message["params"]["request"]["url"])
        foreign = [u for u in self.urls
                   if not u.startswith((self.base_url + "/", *LOCAL_SCHEMES))]
        assert errors == [], errors
        assert foreign == [], foreign
        assert self.urls, "the performance log recorded no request"


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    root = tmp_path_factory.mktemp("studio")
    database_url = f"sqlite:///{root / 'voicereel.db'}"
    services = build_services(Settings(data_dir=root / "data", database_url=database_url))
    try:
        with voicereel_serve(root, database_url) as serve:
            tenant = f"studio-{uuid.uuid4().hex[:8]}"
            key = operations.create_key(services, tenant)
            downloads = root / "downloads"
            downloads.mkdir()
            yield Studio(serve.base_url, key, tenant, downloads, services)
    finally:
        services.db.dispose()


@pytest.fixture(scope="session")
def driver(studio: Studio) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                 f"--window-size={WIDTH},{HEIGHT}", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--hide-scrollbars",
                 "--autoplay-policy=no-user-gesture-required",
                 # a synthetic microphone (Chromium's beeps), allowed without a prompt
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # the driver's path is given, so Selenium Manager has nothing to look up or download
    chrome = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        chrome.execute_cdp_cmd("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(studio.downloads)})
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="session")
def watch(driver: webdriver.Chrome, studio: Studio) -> BrowserWatch:
    return BrowserWatch(driver, studio.base_url)


@pytest.fixture(scope="session")
def axe_source() -> str:
    assert AXE.is_file(), f"{AXE} is missing: run `npm ci` (make test does)"
    return AXE.read_text()
