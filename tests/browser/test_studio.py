"""The Studio in a real browser (headless Chromium from Debian) against a real `voicereel serve`
with the real piper engine: sign in, voices, a screenplay rendered and played with the current
word highlighted, one line fixed, the zip export, the account.

The tests run in order and share one server, one browser and one tenant: each step starts where
the previous one left the page. Each screen is saved at 1280x800 under docs/studio/ and scanned
with axe-core; every step fails on a console error or a request that leaves the server.
"""

from __future__ import annotations

import base64
import io
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
import soundfile as sf
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import HEIGHT, SCREENSHOTS, WIDTH, BrowserWatch, Studio
from voicereel.db import repo
from voicereel.db.tables import Speaker
from voicereel.domain.script import AudioFormat

WAIT_SECONDS = 60.0
RENDER_WAIT_SECONDS = 240.0
SCREENPLAY = """Alice: Welcome back to the show.
Bob: Thanks for having me.
Alice: What caught your attention?
Bob: The light at night."""
NEW_LINE_2 = "Thank you so much for having me."
CAPTION_FORMATS = {"vtt", "srt", "ttml", "ass", "txt", "json"}


def wait_for(driver: webdriver.Chrome, condition: Callable[[], Any],
             timeout: float = WAIT_SECONDS) -> Any:
    """Polls `condition` until it returns something truthy (and returns that)."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda _: condition())


def by_id(driver: webdriver.Chrome, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def open_view(driver: webdriver.Chrome, studio: Studio, view: str) -> None:
    """Loads the page afresh on `view`."""
    url = f"{studio.url}#/{view}"
    driver.execute_script("document.body.dataset.ready = ''")
    if driver.current_url == url:
        driver.refresh()  # the same fragment again would not navigate
    else:
        driver.get(url)
    wait_for(driver, lambda: driver.execute_script(
        "return document.body.dataset.ready") == view)


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the PNG's IHDR
    assert (width, height) == (WIDTH, HEIGHT)
    return path


def serious_violations(driver: webdriver.Chrome, axe_source: str) -> list[str]:
    """axe-core's serious and critical violations on the page as it is."""
    driver.execute_script(axe_source)
    found = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ["violations"]}).then((r) => done(
          r.violations.filter((v) => ["serious", "critical"].includes(v.impact))
           .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(", ")})`)));
    """)
    assert isinstance(found, list)
    return found


def sign_in(driver: webdriver.Chrome, key: str) -> None:
    field = by_id(driver, "signin-key")
    field.clear()
    field.send_keys(key)
    by_id(driver, "signin-form").find_element(By.CSS_SELECTOR, "button").click()


def voice_names(driver: webdriver.Chrome) -> list[str]:
    return list(driver.execute_script(
        "return [...document.querySelectorAll('#voice-rows tr td:first-child')]"
        ".map((td) => td.textContent)"))


def searched(driver: webdriver.Chrome) -> str | None:
    """The search the voice list shows the server's answer to."""
    return by_id(driver, "voice-table").get_attribute("data-query")


def job_of(studio: Studio, driver: webdriver.Chrome) -> dict[str, Any]:
    job_id = driver.execute_script("return sessionStorage.getItem('voicereel.job_id')")
    answer = studio.api("GET", f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_sign_in_refuses_wrong_revoked_and_expired_keys(
        driver: webdriver.Chrome, studio: Studio, watch: BrowserWatch, axe_source: str) -> None:
    driver.get(studio.url)
    wait_for(driver, lambda: driver.execute_script("return document.body.dataset.ready")
             == "signin")
    # every answer is this server's, with the strict policy
    policy = driver.execute_script("""
        return fetch(location.href).then((r) => r.headers.get('content-security-policy'))""")
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    screenshot(driver, "sign-in")
    assert serious_violations(driver, axe_source) == []

    sign_in(driver, "vr_not-a-key-of-this-server")
    assert "not known to this server" in wait_for(
        driver, lambda: by_id(driver, "signin-error").text)

    made = studio.api("POST", "/keys", json={"role": "editor"}).json()
    assert studio.api("DELETE", f"/keys/{made['id']}").status_code == 204
    sign_in(driver, made["key"])
    wait_for(driver, lambda: "was revoked" in by_id(driver, "signin-error").text)

    made = studio.api("POST", "/keys", json={"role": "editor"}).json()
    rotated = studio.api("POST", f"/keys/{made['id']}/rotate", json={"grace_seconds": 0})
    assert rotated.status_code == 201
    sign_in(driver, made["key"])
    wait_for(driver, lambda: "has expired" in by_id(driver, "signin-error").text)
    assert driver.execute_script("return sessionStorage.getItem('voicereel.api_key')") is None
    screenshot(driver, "sign-in-error")
    assert serious_violations(driver, axe_source) == []
    watch.check(expected_statuses=(401,))

    # by keyboard alone: the key field, Enter submits; the focus ring is visible
    field = by_id(driver, "signin-key")
    field.clear()
    field.send_keys(studio.key, Keys.ENTER)
    wait_for(driver, lambda: driver.execute_script("return document.body.dataset.ready")
             == "voices")
    driver.refresh()  # the page afresh: focus starts at the top of the document
    wait_for(driver, lambda: driver.execute_script("return document.body.dataset.ready")
             == "voices")
    ActionChains(driver).send_keys(Keys.TAB).perform()
    assert driver.switch_to.active_element.text == "Skip to content"
    ActionChains(driver).send_keys(Keys.TAB).perform()
    focused = driver.switch_to.active_element
    assert focused.text == "Voices"
    assert focused.value_of_css_property("outline-style") == "solid"
    ActionChains(driver).send_keys(Keys.TAB, Keys.ENTER).perform()  # "Script"
    wait_for(driver, lambda: driver.execute_script("return document.body.dataset.ready")
             == "script")
    # the key lives in this tab's session storage only: not in the URL, not in a cookie
    assert driver.execute_script("return sessionStorage.getItem('voicereel.api_key')") \
        == studio.key
    assert studio.key not in driver.current_url
    assert driver.get_cookies() == []
    watch.check()


def test_voices_upload_drop_refuse_and_delete(
        driver: webdriver.Chrome, studio: Studio, watch: BrowserWatch, axe_source: str,
        reference_wavs: dict[str, bytes], tmp_path: Path) -> None:
    open_view(driver, studio, "voices")
    alice = tmp_path / "alice.wav"
    alice.write_bytes(reference_wavs["Alice"])

    # Alice: chosen with the file input
    by_id(driver, "voice-name").send_keys("Alice")
    by_id(driver, "voice-file").send_keys(str(alice))
    by_id(driver, "voice-submit").click()
    wait_for(driver, lambda: "Registered Alice" in by_id(driver, "toast").text)

    # Bob: dropped on the drop zone
    by_id(driver, "voice-name").send_keys("Bob")
    driver.execute_script("""
        const [b64, name] = arguments;
        const bin = atob(b64), bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        const data = new DataTransfer();
        data.items.add(new File([bytes], name, {type: "audio/wav"}));
        const zone = document.getElementById("drop-zone");
        for (const type of ["dragenter", "dragover", "drop"]) {
          zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true,
                                                   cancelable: true}));
        }""", base64.b64encode(reference_wavs["Bob"]).decode(), "bob.wav")
    assert "bob.wav" in by_id(driver, "voice-file-name").text
    by_id(driver, "voice-submit").click()
    wait_for(driver, lambda: "Registered Bob" in by_id(driver, "toast").text)

    # a silent file is refused in plain words
    silent = io.BytesIO()
    sf.write(silent, np.zeros(24000 * 3, dtype=np.float32), 24000, format="WAV")
    (tmp_path / "silence.wav").write_bytes(silent.getvalue())
    by_id(driver, "voice-name").send_keys("Nobody")
    by_id(driver, "voice-file").send_keys(str(tmp_path / "silence.wav"))
    by_id(driver, "voice-submit").click()
    assert "(nearly) silent" in wait_for(driver, lambda: by_id(driver, "voice-error").text)
    watch.check(expected_statuses=(422,))

    # a take recorded in the page (Chromium's synthetic microphone beeps): level meter and
    # counters move, the take becomes a WAV of its length, and the server's verdict is shown
    by_id(driver, "rec-start").click()
    levels = []
    deadline = time.monotonic() + WAIT_SECONDS
    # "Speech 1.2 of 30 s · recorded 3.0 s"
    while float(by_id(driver, "rec-counter").text.split()[-2]) < 3.0:
        assert time.monotonic() < deadline
        levels.append(float(by_id(driver, "rec-level").get_attribute("value") or 0))
        time.sleep(0.05)
    assert max(levels) > 0
    speech = float(by_id(driver, "rec-counter").text.split()[1])
    assert 0 < speech < 30
    by_id(driver, "rec-stop").click()
    wait_for(driver, lambda: driver.execute_script("return document.body.dataset.recording")
             == "done")
    assert "recording.wav" in by_id(driver, "voice-file-name").text
    seconds = wait_for(driver, lambda: driver.execute_script(
        "const a = document.getElementById('rec-preview');"
        "return a.readyState >= 1 && Number.isFinite(a.duration) ? a.duration : null"))
    assert 2.5 < seconds < 10
    by_id(driver, "voice-name").send_keys("Microphone")
    by_id(driver, "voice-submit").click()
    wait_for(driver, lambda: by_id(driver, "voice-error").get_attribute("data-problem")
             not in (None, "", "reference-silent"))
    assert by_id(driver, "voice-error").get_attribute("data-problem") in {
        "reference-tone", "reference-noise", "reference-too-short"}
    assert "of speech is required" in by_id(driver, "voice-error").text
    watch.check(expected_statuses=(422,))

    # a third voice (registered over the API) deleted after a confirmation; cancel keeps it
    carol = studio.api("POST", "/speakers", data={"name": "Carol"},
                       files={"audio": ("carol.wav", reference_wavs["Alice"], "audio/wav")})
    assert carol.status_code == 201, carol.text
    open_view(driver, studio, "voices")
    names = lambda: voice_names(driver)  # noqa: E731
    assert sorted(names()) == ["Alice", "Bob", "Carol"]
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Delete Carol']").click()
    wait_for(driver, lambda: by_id(driver, "confirm-dialog").get_attribute("open") is not None)
    by_id(driver, "confirm-cancel").click()
    assert sorted(names()) == ["Alice", "Bob", "Carol"]
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Delete Carol']").click()
    by_id(driver, "confirm-ok").click()
    wait_for(driver, lambda: sorted(names()) == ["Alice", "Bob"])
    assert studio.api("GET", f"/speakers/{carol.json()['id']}").status_code == 404

    # a voice's reference plays in the page: the recording uploaded, whole
    driver.find_element(By.CSS_SELECTOR, "button[aria-label=\"Play Bob's reference\"]").click()
    duration = wait_for(driver, lambda: driver.execute_script(
        "const a = document.getElementById('reference-player');"
        "return a.readyState >= 1 && !a.paused ? a.duration : null"))
    assert duration == pytest.approx(sf.info(io.BytesIO(reference_wavs["Bob"])).duration,
                                     abs=0.05)
    driver.execute_script("document.getElementById('reference-player').pause()")
    assert studio.api("GET", "/speakers/spk_unknown/reference").status_code == 404

    by_id(driver, "voice-search").send_keys("bo")
    wait_for(driver, lambda: searched(driver) == "bo" and names() == ["Bob"])
    by_id(driver, "voice-search").send_keys(Keys.BACKSPACE * 2)  # input events, as typed
    wait_for(driver, lambda: searched(driver) == "" and len(names()) == 2)
    screenshot(driver, "voices")
    assert serious_violations(driver, axe_source) == []
    watch.check()


def test_script_paste_row_errors_and_render_to_100_percent(
        driver: webdriver.Chrome, studio: Studio, watch: BrowserWatch, axe_source: str,
        tmp_path: Path) -> None:
    open_view(driver, studio, "script")
    driver.find_element(By.CSS_SELECTOR, "#paste-box summary").click()
    # a screenplay file lands in the paste box; a name without a voice is refused
    (tmp_path / "scene.txt").write_text("Alice: Hello.\nZed: Who am I?\n")
    by_id(driver, "paste-file").send_keys(str(tmp_path / "scene.txt"))
    wait_for(driver, lambda: "Zed: Who am I?" in by_id(driver, "paste-text").get_attribute("value"))
    by_id(driver, "paste-apply").click()
    assert 'line 2: no voice named "Zed"' in by_id(driver, "paste-error").text
    by_id(driver, "paste-text").clear()
    by_id(driver, "paste-text").send_keys(SCREENPLAY)
    by_id(driver, "paste-apply").click()
    rows = driver.find_elements(By.CSS_SELECTOR, "#script-rows tr")
    assert len(rows) == 4
    speakers = {s["id"]: s["name"] for s in studio.api("GET", "/speakers").json()["items"]}
    picked = [speakers[r.find_element(By.CSS_SELECTOR, "select").get_attribute("value")]
              for r in rows]
    assert picked == ["Alice", "Bob", "Alice", "Bob"]
    # rows move up and down
    texts = lambda: driver.execute_script(  # noqa: E731
        "return [...document.querySelectorAll('#script-rows textarea')].map((t) => t.value)")
    original = texts()
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Move row 4 up']").click()
    assert texts() == [*original[:2], original[3], original[2]]
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Move row 3 down']").click()
    assert texts() == original
    rows = driver.find_elements(By.CSS_SELECTOR, "#script-rows tr")
    characters = sum(len(line.split(": ", 1)[1]) for line in SCREENPLAY.splitlines())
    counts = by_id(driver, "script-counts").text
    assert "4 of 200 lines" in counts and f"{characters} of 50000 characters" in counts

    # the API's problem lands on the row it names
    text_2 = rows[1].find_element(By.CSS_SELECTOR, "textarea")
    text_2.clear()
    text_2.send_keys("   ")
    by_id(driver, "render-submit").click()
    assert wait_for(driver, lambda: by_id(driver, "row-1-text-error").text).startswith("Row 2")
    assert text_2.get_attribute("aria-invalid") == "true"
    assert by_id(driver, "row-0-text-error").text == ""
    screenshot(driver, "script")
    assert serious_violations(driver, axe_source) == []
    watch.check(expected_statuses=(422,))

    text_2.clear()
    text_2.send_keys("Thanks for having me.")
    assert by_id(driver, "row-1-text-error").text == ""  # cleared as the row is edited

    by_id(driver, "render-submit").click()
    wait_for(driver, lambda: driver.execute_script("return document.body.dataset.ready")
             == "job")
    seen: list[int] = []
    deadline = time.monotonic() + RENDER_WAIT_SECONDS
    while not seen or seen[-1] < 100:
        assert time.monotonic() < deadline, seen
        assert by_id(driver, "job-status").text not in ("failed", "canceled")
        value = int(by_id(driver, "job-progress").get_attribute("value") or 0)
        if not seen or seen[-1] != value:
            seen.append(value)
        time.sleep(0.05)
    assert seen == sorted(seen) and seen[-1] == 100
    # the bar moves line by line: a value on the way (of 4 lines and the assembly) is seen
    assert [v for v in seen if 0 < v < 100], seen
    assert by_id(driver, "job-progress-text").text == "100 %"
    assert by_id(driver, "job-status").text == "succeeded"
    watch.check()
    # the bar followed the job's server-sent events, not polls
    assert any(u.endswith("/events") and "/v1/jobs/" in u for u in watch.urls), watch.urls


def test_player_highlights_the_spoken_word_and_seeks(
        driver: webdriver.Chrome, studio: Studio, watch: BrowserWatch, axe_source: str) -> None:
    wait_for(driver, lambda: len(driver.find_elements(By.CSS_SELECTOR, "#captions .word")) > 0)
    job = job_of(studio, driver)


    captions = httpx.get(job["result"]["captions"]["json"]["url"]).json()
    words = [w for segment in captions["segments"] for w in segment["words"]]
    shown = [w.text for w in driver.find_elements(By.CSS_SELECTOR, "#captions .word")]
    assert shown == [w["text"] for w in words]
    lanes = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#lane-legend li")]
    assert sorted(lanes) == ["Alice", "Bob"]
    # the waveform is drawn from the decoded audio: the lanes hold more than the background
    colours = driver.execute_script("""
        const c = document.getElementById("waveform");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4) seen.add(`${d[i]},${d[i+1]},${d[i+2]}`);
        return seen.size;""")
    assert colours > 4

    driver.execute_script("document.getElementById('player').play()")
    current = lambda: driver.execute_script(  # noqa: E731
        "return Number(document.getElementById('captions').dataset.current ?? -1)")
    first = wait_for(driver, lambda: current() >= 0 and current() + 1)  # +1: 0 is truthy
    later = wait_for(driver, lambda: current() >= first and current() + 1)
    assert later > first  # the highlight moved on to a later word while playing
    highlighted = driver.find_elements(By.CSS_SELECTOR, "#captions .word.current")
    assert len(highlighted) == 1
    screenshot(driver, "player")
    driver.execute_script("document.getElementById('player').pause()")

    # a click on a word seeks to it, and it is the one highlighted
    target = len(words) - 3
    driver.find_element(By.CSS_SELECTOR, f"#captions .word[data-index='{target}']").click()
    at = driver.execute_script("return document.getElementById('player').currentTime")
    assert words[target]["start"] <= at <= words[target]["end"]
    assert current() == target
    # a line's button (keyboard operable) seeks to the line
    line_3 = driver.find_elements(By.CSS_SELECTOR, "#captions .cap-line button.seek")[2]
    line_3.click()
    at = driver.execute_script("return document.getElementById('player').currentTime")
    assert abs(at - captions["segments"][2]["start"]) < 0.01
    assert serious_violations(driver, axe_source) == []
    watch.check()


def test_fix_line_2_renders_only_that_line(
        driver: webdriver.Chrome, studio: Studio, watch: BrowserWatch) -> None:
    fix = driver.find_element(By.CSS_SELECTOR, "#fix-rows li[data-line='1'] textarea")
    fix.clear()
    fix.send_keys(NEW_LINE_2)
    driver.find_element(By.XPATH, "//button[text()='Re-render line 2']").click()
    wait_for(driver, lambda: driver.execute_script(
        "return document.getElementById('job-panel').dataset.linesToRender") == "1")
    wait_for(driver, lambda: by_id(driver, "player-card").get_attribute("data-revision") == "2",
             RENDER_WAIT_SECONDS)
    assert by_id(driver, "job-progress-text").text == "100 %"
    rows = driver.find_elements(By.CSS_SELECTOR, "#revision-rows tr")
    assert [r.get_attribute("data-revision") for r in rows] == ["2", "1"]
    shown = " ".join(w.text for w in driver.find_elements(By.CSS_SELECTOR, "#captions .word"))
    assert NEW_LINE_2.rstrip(".") in shown

    job = job_of(studio, driver)
    revision = studio.api("GET", f"/jobs/{job['id']}/revisions/2").json()
    assert [t["rendered_in"] for t in revision["takes"]] == [1, 2, 1, 1]
    assert revision["characters"] == len(NEW_LINE_2)

    # an earlier revision plays again from the list
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Play revision 1']").click()
    wait_for(driver, lambda: by_id(driver, "player-card").get_attribute("data-revision") == "1")
    watch.check()


def test_export_offers_every_format_and_the_zip_holds_every_file(
        driver: webdriver.Chrome, studio: Studio, watch: BrowserWatch, axe_source: str) -> None:
    open_view(driver, studio, "export")
    job = job_of(studio, driver)
    result = job["result"]
    links = [result["audio"], *result["captions"].values(), *result["stems"].values()]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#export-rows tr")) == len(links)
    formats = [tr.get_attribute("data-format")
               for tr in driver.find_elements(By.CSS_SELECTOR, "#format-rows tr")]
    assert formats == list(get_args(AudioFormat))
    screenshot(driver, "export")
    assert serious_violations(driver, axe_source) == []

    # another format is a revision that renders no line: the same takes, encoded again
    driver.find_element(By.XPATH, "//button[text()='Make MP3']").click()
    wait_for(driver, lambda: "holds the audio in MP3" in by_id(driver, "export-status").text,
             RENDER_WAIT_SECONDS)
    assert by_id(driver, "export-panel").get_attribute("data-lines-to-render") == ""
    wav_revision = studio.api("GET", f"/jobs/{job['id']}/revisions/2").json()
    job = job_of(studio, driver)
    assert job["revision"] == 3 and job["result"]["audio"]["content_type"] == "audio/mpeg"
    revision = studio.api("GET", f"/jobs/{job['id']}/revisions/3").json()
    assert [t["rendered_in"] for t in revision["takes"]] == [1, 2, 1, 1]
    assert revision["characters"] == 0

    # the captions in another style profile: again a revision that renders no line
    Select(by_id(driver, "export-style")).select_by_value("bbc")
    by_id(driver, "export-restyle").click()
    wait_for(driver, lambda: "captions in the bbc style" in by_id(driver, "export-status").text,
             RENDER_WAIT_SECONDS)
    assert by_id(driver, "export-panel").get_attribute("data-lines-to-render") == ""
    revision = studio.api("GET", f"/jobs/{job['id']}/revisions/4").json()
    assert revision["request"]["captions"]["style"] == "bbc" and revision["characters"] == 0
    assert revision["request"]["output"]["format"] == "mp3"
    made = {tr.get_attribute("data-format"): tr.text
            for tr in driver.find_elements(By.CSS_SELECTOR, "#format-rows tr")}
    assert made["wav"].endswith("Download WAV (revision 2)")
    assert made["mp3"].endswith("Download MP3 (revision 4, latest)")
    assert made["flac"].endswith("Make FLAC")

    job = job_of(studio, driver)
    by_id(driver, "export-zip").click()
    archive = studio.downloads / f"{job['id']}-r4.zip"
    wait_for(driver, lambda: archive.is_file() and "Saved" in by_id(driver, "export-status").text)
    result = job["result"]
    with zipfile.ZipFile(archive) as zipped:
        assert zipped.testzip() is None
        names = set(zipped.namelist())
        def name(link: dict[str, Any]) -> str:
            return parse_qs(urlparse(link["url"]).query)["name"][0]
        wav = wav_revision["result"]["audio"]
        assert names == ({name(result["audio"]), name(wav)}
                         | {f"captions/{name(link)}" for link in result["captions"].values()}
                         | {f"stems/{name(link)}" for link in result["stems"].values()})
        assert set(result["captions"]) >= CAPTION_FORMATS
        assert len(result["stems"]) == 2

        assert zipped.read(name(result["audio"])) == httpx.get(result["audio"]["url"]).content
        audio = zipped.read(name(wav))
        assert audio == httpx.get(wav["url"]).content
        assert sf.info(io.BytesIO(audio)).duration == pytest.approx(result["duration"], abs=0.01)
    watch.check()


def test_account_shows_usage_keys_and_audit(
        driver: webdriver.Chrome, studio: Studio, watch: BrowserWatch, axe_source: str) -> None:
    open_view(driver, studio, "account")
    usage = studio.api("GET", "/usage").json()
    assert by_id(driver, "usage-characters").text == str(usage["totals"]["characters"])
    assert usage["totals"]["characters"] > 0
    bars = driver.find_elements(By.CSS_SELECTOR, "#usage-chart .bar")
    assert len(bars) >= 28
    assert max(float(b.value_of_css_property("height").removesuffix("px")) for b in bars) > 100
    keys = studio.api("GET", "/keys").json()["items"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#key-rows tr")) == len(keys)
    actions = [td.text for td in driver.find_elements(By.CSS_SELECTOR,
                                                      "#audit-rows td:nth-child(2)")]
    assert "job.submit" in actions and "speaker.delete" in actions
    screenshot(driver, "account")
    assert serious_violations(driver, axe_source) == []
    watch.check()


def test_voices_search_and_page_past_the_first_page(
        driver: webdriver.Chrome, studio: Studio, watch: BrowserWatch) -> None:
    # 19 more voices, copies of Bob's row: registering 19 references over the API would spend
    # about 25 s analysing recordings that the steps before have already shown being analysed
    with studio.services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, studio.tenant)
        bob = next(s for s in repo.list_speakers(session, tenant.id, 100, None, "Bob").items)
        for i in range(19):
            repo.add_speaker(session, Speaker(
                id=repo.new_id("spk"), tenant_id=tenant.id, name=f"Extra {i:02d}", lang=bob.lang,
                transcript="", reference_key=bob.reference_key,
                reference_format=bob.reference_format, reference_seconds=bob.reference_seconds,
                speech_seconds=bob.speech_seconds, engine=bob.engine, profile=bob.profile))
    every = [s["name"] for s in studio.api("GET", "/speakers?limit=100").json()["items"]]
    assert len(every) == 21 and every[-1] == "Alice"  # newest first: Alice is on page 2

    open_view(driver, studio, "voices")
    assert voice_names(driver) == every[:20]
    more = by_id(driver, "voice-more")
    assert more.is_displayed()
    # the server searches every voice, not only the page shown
    by_id(driver, "voice-search").send_keys("ALI")
    wait_for(driver, lambda: searched(driver) == "ALI" and voice_names(driver) == ["Alice"])
    by_id(driver, "voice-search").send_keys(Keys.BACKSPACE * 3)
    wait_for(driver, lambda: searched(driver) == "" and voice_names(driver) == every[:20])
    more.click()
    wait_for(driver, lambda: voice_names(driver) == every)
    assert not more.is_displayed()
    by_id(driver, "voice-search").send_keys("extra 1")
    wait_for(driver, lambda: searched(driver) == "extra 1" and voice_names(driver) == [
        name for name in every if name.startswith("Extra 1")])
    watch.check()
