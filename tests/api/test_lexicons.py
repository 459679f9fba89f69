"""Pronunciation lexicons through the API: CRUD, tenants, W3C PLS, and what the engine is given
(real piper, SQLite and PostgreSQL through the shared fixtures)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from fastapi.testclient import TestClient

from tests.api.job_helpers import register_speaker, wait_for_job
from voicereel.domain.lexicon import PLS_MEDIA_TYPE, PLS_NS
from voicereel.engines.piper import PiperEngine
from voicereel.settings import Settings

PLS = f"""<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="{PLS_NS}" alphabet="ipa" xml:lang="en-US">
  <lexeme><grapheme>VoiceReel</grapheme><alias>voice reel</alias></lexeme>
  <lexeme><grapheme>Nguyen</grapheme><grapheme>NGUYEN</grapheme>
    <phoneme>ŋwˈiən</phoneme></lexeme>
  <lexeme><grapheme>Xochitl</grapheme><phoneme alphabet="x-sampa">so:tSi</phoneme></lexeme>
</lexicon>""".encode()




def _words(client: TestClient, job: dict[str, Any]) -> list[list[dict[str, Any]]]:
    caption = json.loads(client.get(job["result"]["captions"]["json"]["url"]).text)
    return [segment["words"] for segment in caption["segments"]]


def test_lexicon_crud_and_tenants(client: TestClient, other_client: TestClient) -> None:
    body = {"name": "Brands", "lang": "en-us", "rules": [
        {"grapheme": "VoiceReel", "alias": "voice reel"},
        {"grapheme": "SQL", "alias": "sequel", "case_sensitive": True}]}
    created = client.post("/v1/lexicons", json=body)
    assert created.status_code == 201, created.text
    lexicon = created.json()
    assert created.headers["location"] == f"/v1/lexicons/{lexicon['id']}"
    assert lexicon["lang"] == "en-US" and len(lexicon["rules"]) == 2
    assert client.get(f"/v1/lexicons/{lexicon['id']}").json() == lexicon
    assert [x["id"] for x in client.get("/v1/lexicons").json()["items"]] == [lexicon["id"]]
    for call in (other_client.get, other_client.delete):
        refused = call(f"/v1/lexicons/{lexicon['id']}")
        assert refused.status_code == 404 and refused.json()["type"].endswith("/not-found")
    assert other_client.put(f"/v1/lexicons/{lexicon['id']}", json=body).status_code == 404
    assert other_client.get("/v1/lexicons").json()["items"] == []
    replaced = client.put(f"/v1/lexicons/{lexicon['id']}", json={**body, "name": "Names"})
    assert replaced.status_code == 200 and replaced.json()["name"] == "Names"
    for bad in ({"name": "x", "lang": "xx"},
                {"name": "x", "lang": "en", "rules": [{"grapheme": "two words", "alias": "a"}]},
                {"name": "x", "lang": "en", "rules": [{"grapheme": "Lonely"}]}):
        r = client.post("/v1/lexicons", json=bad)
        assert r.status_code == 422 and r.json()["errors"], (bad, r.text)
    assert client.delete(f"/v1/lexicons/{lexicon['id']}").status_code == 204
    assert client.get(f"/v1/lexicons/{lexicon['id']}").status_code == 404


def test_pls_import_and_export_round_trip(client: TestClient) -> None:
    imported = client.post("/v1/lexicons?name=Cast", content=PLS,
                           headers={"Content-Type": PLS_MEDIA_TYPE})
    assert imported.status_code == 201, imported.text
    lexicon = imported.json()
    assert lexicon["name"] == "Cast" and lexicon["lang"] == "en-US"
    # one rule per grapheme; the x-sampa-only lexeme has nothing an engine can be given
    assert [(r["grapheme"], r.get("alias"), r.get("phoneme")) for r in lexicon["rules"]] == [
        ("VoiceReel", "voice reel", None), ("Nguyen", None, "ŋwˈiən"),
        ("NGUYEN", None, "ŋwˈiən")]
    exported = client.get(f"/v1/lexicons/{lexicon['id']}",
                          headers={"Accept": PLS_MEDIA_TYPE})
    assert exported.headers["content-type"].startswith(PLS_MEDIA_TYPE)
    root = ET.fromstring(exported.content)
    assert root.tag == f"{{{PLS_NS}}}lexicon" and root.get("alphabet") == "ipa"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-US"
    again = client.post("/v1/lexicons?name=Cast", content=exported.content,
                        headers={"Content-Type": PLS_MEDIA_TYPE}).json()
    assert again["rules"] == lexicon["rules"] and again["lang"] == lexicon["lang"]
    for broken in (b"<lexicon>", b"<other xmlns='x'/>",
                   b'<!DOCTYPE l [<!ENTITY a "b">]><lexicon/>'):
        r = client.post("/v1/lexicons", content=broken,
                        headers={"Content-Type": PLS_MEDIA_TYPE})
        assert r.status_code == 422, (broken, r.text)


def test_alias_and_ipa_rules_change_what_the_engine_is_given(
        client: TestClient, other_client: TestClient,
        reference_wavs: dict[str, bytes]) -> None:
    brands = client.post("/v1/lexicons", json={"name": "Brands", "lang": "en", "rules": [
        {"grapheme": "VoiceReel", "alias": "voice reel"},
        {"grapheme": "Nguyen", "phoneme": "ŋwˈiən"}]}).json()
    korean = client.post("/v1/lexicons", json={"name": "Ko", "lang": "ko", "rules": [
        {"grapheme": "voicereel", "alias": "보이스릴"}]}).json()
    theirs = other_client.post("/v1/lexicons", json={"name": "T", "lang": "en"}).json()
    alice = register_speaker(client, reference_wavs["Alice"], "Alice")
    minji = register_speaker(client, reference_wavs["Bob"], "민지", "ko")
    script = [{"speaker_id": alice, "text": "Welcome to VoiceReel, Ms. Nguyen."},
              {"speaker_id": minji, "text": "VoiceReel에 오신 걸 환영합니다."},
              {"speaker_id": alice, "text": "Thanks, see you at 5."}]
    refused = client.post("/v1/synthesize", json={"script": script,
                                                  "lexicons": [brands["id"], theirs["id"]]})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "lexicons", 1], refused.text
    r = client.post("/v1/synthesize", json={"script": script, "captions": ["json"],
                                            "lexicons": [brands["id"], korean["id"]]})
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    first, second, third = _words(client, job)
    assert [w["text"] for w in first] == script[0]["text"].split()  # captions keep the words
    spoken = {w["text"]: w.get("spoken") for w in first}
    assert spoken["VoiceReel,"] == "voice reel," and spoken["Nguyen."] == "[[ŋwˈiən]]."
    assert all(w["end"] > w["start"] for w in first), first
    # a lexicon applies to its language only: whole words, so "VoiceReel에" is untouched
    assert second[0]["text"] == "VoiceReel에" and second[0].get("spoken") is None
    assert third[-1]["spoken"] == "five."

    # a revision with another lexicon renders only the lines whose spoken words it changes
    names = client.post("/v1/lexicons", json={"name": "Names", "lang": "en", "rules": [
        {"grapheme": "Nguyen", "alias": "win"}]}).json()
    revised = client.post(f"/v1/jobs/{job['id']}/revisions", json={"lexicons": [names["id"]]})
    assert revised.status_code == 202, revised.text
    job = wait_for_job(client, job["id"])
    assert job["status"] == "succeeded", job
    takes = client.get(f"/v1/jobs/{job['id']}/revisions/2").json()["takes"]
    assert [t["rendered_in"] for t in takes] == [2, 1, 1]
    first = _words(client, job)[0]
    assert {w["text"]: w.get("spoken") for w in first}["Nguyen."] == "win."
    assert {w["text"]: w.get("spoken") for w in first}["VoiceReel,"] is None


def test_piper_speaks_the_phonemes_of_an_ipa_rule() -> None:
    engine = PiperEngine(Settings(piper_noise_scale=0, piper_noise_w_scale=0))
    phonemes = engine._model_for("en").phonemize("[[ŋwˈiən]]")
    assert phonemes == [list("ŋwˈiən")]
    audio, spans = engine.render_base("Ms. [[ŋwˈiən]].", seed=1)
    assert len(spans) == 2 and spans[1].end > spans[1].start
    plain, _ = engine.render_base("Ms. Nguyen.", seed=1)
    assert len(audio) != len(plain) or not (audio == plain).all()
