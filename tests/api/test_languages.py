"""Languages end to end: speaker tags, per-line languages, /v1/languages and refusals (SQLite
and PostgreSQL through the shared fixtures, the real piper and espeak-ng engines)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.job_helpers import register_speaker, wait_for_job
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.domain.textnorm import normalize
from voicereel.engines.espeak import EspeakEngine
from voicereel.engines.fish_speech import FishSpeechEngine
from voicereel.engines.piper import PiperEngine
from voicereel.services import build_services
from voicereel.settings import Settings


def test_languages_lists_each_engines_declaration(client: TestClient) -> None:
    r = client.get("/v1/languages")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["engine"] == "piper" and body["fallback_engine"] is None
    declared = {e["name"]: {lang["tag"]: lang["quality"] for lang in e["languages"]}
                for e in body["engines"]}
    assert declared == {"piper": PiperEngine.languages, "espeak": EspeakEngine.languages,
                        "fish-speech": FishSpeechEngine.languages}
    assert body["accepted"] == ["en", "ko"]
    piper = next(e for e in body["engines"] if e["name"] == "piper")
    assert piper["configured"] and not piper["fallback"]
    notes = {lang["tag"]: lang["normalisation"] for lang in piper["languages"]}
    assert "Sino-Korean" in notes["ko"]
    french = next(lang for e in body["engines"] if e["name"] == "espeak"
                  for lang in e["languages"] if lang["tag"] == "fr")
    assert french["normalisation"].startswith("none")


def test_speaker_lang_must_be_a_known_tag(client: TestClient,
                                          reference_wavs: dict[str, bytes]) -> None:
    for bad in ("xx", "korean", "ko--KR", "en-"):
        r = client.post("/v1/speakers", data={"name": "N", "lang": bad},
                        files={"audio": ("r.wav", reference_wavs["Alice"], "audio/wav")})
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["loc"] for e in r.json()["errors"]] == [["body", "lang"]], r.text
    korean = register_speaker(client, reference_wavs["Bob"], "B", "ko-kr")
    speaker = client.get(f"/v1/speakers/{korean}")
    assert speaker.json()["lang"] == "ko-KR"


def test_korean_and_english_script_end_to_end(client: TestClient,
                                              reference_wavs: dict[str, bytes]) -> None:
    minji = register_speaker(client, reference_wavs["Alice"], "민지", "ko")
    junho = register_speaker(client, reference_wavs["Bob"], "준호", "ko-KR")
    emma = register_speaker(client, reference_wavs["Alice"], "Emma", "en")
    script = [
        {"speaker_id": minji, "text": "오늘 회의는 3시 30분에 시작합니다."},
        {"speaker_id": junho, "text": "가격은 15,000원입니다. 2명이 옵니다."},
        {"speaker_id": emma, "text": "I will join at 3:30 pm."},
        {"speaker_id": junho, "text": "See you at 5.", "lang": "en"},
    ]
    r = client.post("/v1/synthesize", json={"script": script, "captions": ["json", "vtt"]})
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    caption = json.loads(client.get(job["result"]["captions"]["json"]["url"]).text)
    segments = caption["segments"]
    assert [s["text"] for s in segments] == [line["text"] for line in script]
    for segment, line in zip(segments, script, strict=True):
        assert [w["text"] for w in segment["words"]] == line["text"].split()
        for word in segment["words"]:
            assert segment["start"] <= word["start"] <= word["end"] <= segment["end"], word
        assert segment["words"][-1]["end"] > segment["words"][0]["start"]
    spoken = {w["text"]: w.get("spoken") for s in segments for w in s["words"]}
    assert spoken["3시"] == "세 시" and spoken["30분에"] == "삼십 분에"
    assert spoken["15,000원입니다."] == "만 오천 원입니다." and spoken["2명이"] == "두 명이"
    assert spoken["3:30"] == "three thirty" and spoken["오늘"] is None
    # the English line of the Korean speaker was normalised as English
    assert spoken["See"] is None and spoken["5."] == "five."
    assert "<v 준호>- See you at 5." in client.get(job["result"]["captions"]["vtt"]["url"]).text

    # a revision reads line 3 in its speaker's Korean: that line alone renders again
    job_id = job["id"]
    r = client.post(f"/v1/jobs/{job_id}/revisions", json={"edits": [{"line": 3, "lang": None}]})
    assert r.status_code == 202, r.text
    revised = wait_for_job(client, job_id)
    assert revised["status"] == "succeeded" and revised["revision"] == 2, revised
    shown = client.get(f"/v1/jobs/{job_id}/revisions/2").json()
    assert shown["characters"] == len(script[3]["text"]), shown
    caption = json.loads(client.get(revised["result"]["captions"]["json"]["url"]).text)
    assert caption["segments"][3]["words"][-1]["spoken"] == "오."
    refused = client.post(f"/v1/jobs/{job_id}/revisions",
                          json={"edits": [{"line": 0, "lang": "ja"}]})
    assert refused.status_code == 422 and refused.json()["type"].endswith(
        "/language-unsupported"), refused.text


def test_a_language_the_engine_cannot_speak_is_refused(client: TestClient,
                                                       reference_wavs: dict[str, bytes]) -> None:
    ja = register_speaker(client, reference_wavs["Alice"], "Haruka", "ja")
    en = register_speaker(client, reference_wavs["Bob"], "Bob", "en")
    r = client.post("/v1/synthesize", json={"script": [
        {"speaker_id": en, "text": "Hello."}, {"speaker_id": ja, "text": "こんにちは。"},
        {"speaker_id": en, "text": "Bonjour.", "lang": "fr"}]})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith("/language-unsupported")
    assert "fish-speech" in problem["detail"] and "piper" in problem["detail"]
    assert [(e["loc"], e["lang"], e["engines"]) for e in problem["errors"]] == [
        (["body", "script", 1, "lang"], "ja", ["fish-speech"]),
        (["body", "script", 2, "lang"], "fr", ["fish-speech", "espeak"])]
    bad = client.post("/v1/synthesize", json={"script": [
        {"speaker_id": en, "text": "Hi.", "lang": "klingon"}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][-1] == "lang", bad.text


@pytest.fixture
def fallback_client(database_url: str, tmp_path: Path, tenant_name: str
                    ) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        language_fallback_engine="espeak")
    services = build_services(settings)
    services.db.migrate()
    key = operations.create_key(services, tenant_name)
    with TestClient(create_app(settings, services)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client
    services.db.dispose()


def test_a_fallback_engine_speaks_what_the_configured_one_cannot(
        fallback_client: TestClient, reference_wavs: dict[str, bytes]) -> None:
    client = fallback_client
    assert client.get("/v1/languages").json()["fallback_engine"] == "espeak"
    en = register_speaker(client, reference_wavs["Bob"], "Bob", "en")
    text = "Nous commençons à 15 heures précises."
    r = client.post("/v1/synthesize", json={"script": [
        {"speaker_id": en, "text": "We start now."},
        {"speaker_id": en, "text": text, "lang": "fr-FR"}]})
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    caption = json.loads(client.get(job["result"]["captions"]["json"]["url"]).text)
    french = caption["segments"][1]
    # passed through unchanged (no French normaliser), timed word by word by espeak-ng
    assert [w["text"] for w in french["words"]] == text.split()
    assert all("spoken" not in w or w["spoken"] is None for w in french["words"])
    assert normalize(text, "fr").spoken_text == text
    starts = [w["start"] for w in french["words"]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), french


def test_the_korean_demo_renders_a_korean_dialogue(
        client: TestClient, reference_wavs: dict[str, bytes], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from voicereel import demo

    # the session's references are the demo's voices; made once, not again here
    by_voice = {voice: reference_wavs[name] for name, voice in demo.VOICES.items()}
    monkeypatch.setattr(demo, "make_reference", lambda pitch, tempo: by_voice[(pitch, tempo)])
    demo._drive(client, tmp_path, lambda message: None, "ko")
    caption = json.loads((tmp_path / "demo.json").read_text())
    assert [s["text"] for s in caption["segments"]] == [t for _, t in demo.KOREAN_DIALOGUE]
    assert set(caption["speakers"].values()) == set(demo.KOREAN_NAMES.values())
    words = {w["text"]: w.get("spoken") for s in caption["segments"] for w in s["words"]}
    assert words["3시"] == "세 시" and words["15,000원입니다."] == "만 오천 원입니다."
    vtt = (tmp_path / "demo.vtt").read_text()
    assert "<v 민지>" in vtt and "<v 준호>" in vtt and "3시 30분에" in vtt
    assert (tmp_path / "demo.wav").stat().st_size > 24000 * 2 * 5
