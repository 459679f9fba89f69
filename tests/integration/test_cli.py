"""The `voicereel` client commands end to end, as subprocesses against a live server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from tests.integration.conftest import LiveServer, _free_port
from voicereel.client import VoiceReel

# The CLI is client-side: one database backend is enough to drive it.
pytestmark = pytest.mark.parametrize("live_server", ["sqlite"], indirect=True)

SCREENPLAY = """\
alice: Good morning, and welcome to the show.

BOB: Thanks. [pause:300ms] Glad to be here.
[pause:1s]
Alice:  Let us begin.
"""


def _run(server: LiveServer, key: str, *args: str, cwd: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "VOICEREEL_URL": server.base_url, "VOICEREEL_API_KEY": key}
    return subprocess.run([sys.executable, "-m", "voicereel", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_register_then_render_a_screenplay(live_server: LiveServer,
                                           reference_files: dict[str, Path],
                                           tmp_path: Path) -> None:
    key = live_server.create_key()
    (tmp_path / "alice.txt").write_text("The old lighthouse stood at the edge of the cliff.\n")
    added = _run(live_server, key, "speakers", "add", "Alice", "--audio",
                 str(reference_files["Alice"]), "--transcript-file", str(tmp_path / "alice.txt"))
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("spk_") and "Alice" in added.stdout
    bob = _run(live_server, key, "speakers", "add", "Bob", "--audio",
               str(reference_files["Bob"]), "--transcript", "A reading.", "--lang", "en",
               "--json")
    assert bob.returncode == 0, bob.stderr
    assert json.loads(bob.stdout)["name"] == "Bob"

    listed = _run(live_server, key, "speakers", "list")
    assert listed.stdout.splitlines()[0].split() == ["ID", "NAME", "LANG", "SPEECH_S", "CREATED"]
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == ["Bob", "Alice"]

    script = tmp_path / "dialogue.txt"
    script.write_text(SCREENPLAY)
    rendered = _run(live_server, key, "synthesize", str(script), "--out", "out",
                    "--format", "mp3", "--captions", "vtt,json", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "Rendering job_" in rendered.stderr
    job_id = rendered.stdout.split()[0]
    assert rendered.stdout.split()[1] == "succeeded"
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        f"{job_id}-audio.mp3", f"{job_id}-captions.json", f"{job_id}-captions.vtt"]
    assert sorted(rendered.stdout.splitlines()[1:]) == [
        f"out/{job_id}-audio.mp3", f"out/{job_id}-captions.json", f"out/{job_id}-captions.vtt"]
    audio, rate = sf.read(out / f"{job_id}-audio.mp3", dtype="float32")
    captions = json.loads((out / f"{job_id}-captions.json").read_text())
    segments = captions["segments"]
    assert [s["speaker"] for s in segments] == ["Alice", "Bob", "Alice"]
    assert segments[1]["text"] == "Thanks. Glad to be here."
    assert segments[2]["start"] - segments[1]["end"] == pytest.approx(1.0, abs=0.001)
    assert rate == 24000 and abs(len(audio) / rate - captions["duration"]) < 0.1

    shown = _run(live_server, key, "jobs", "show", job_id, "--json")
    assert json.loads(shown.stdout)["status"] == "succeeded"
    assert _run(live_server, key, "jobs", "delete", job_id).returncode == 0
    gone = _run(live_server, key, "jobs", "show", job_id)
    assert gone.returncode == 3 and "404" in gone.stderr

    usage = _run(live_server, key, "usage", "--json")
    assert usage.returncode == 0, usage.stderr
    assert json.loads(usage.stdout)["totals"]["jobs"] == 1
    as_csv = _run(live_server, key, "usage", "--csv").stdout.splitlines()
    assert as_csv[0] == "date,engine,jobs,characters,audio_seconds"
    assert as_csv[1].split(",")[1:3] == ["piper", "1"]

    unknown = tmp_path / "unknown.txt"
    unknown.write_text("Alice: Hi.\nCarol: Hello.\n")
    refused = _run(live_server, key, "synthesize", str(unknown))
    assert refused.returncode == 2
    assert "line 2: no speaker named 'Carol'; known speakers: Alice, Bob" in refused.stderr


def test_exit_codes_for_a_wrong_key_and_an_unreachable_server(live_server: LiveServer
                                                              ) -> None:
    wrong = _run(live_server, "vr_wrong", "speakers", "list")
    assert wrong.returncode == 3
    assert "the API key was refused" in wrong.stderr and "VOICEREEL_API_KEY" in wrong.stderr
    down = _run(live_server, "vr_any", "jobs", "show", "job_1", "--url",
                f"http://127.0.0.1:{_free_port()}")
    assert down.returncode == 5 and "cannot reach VoiceReel" in down.stderr
    usage_error = _run(live_server, "vr_any", "synthesize", "x.txt", "--captions", "vtt,mp4")
    assert usage_error.returncode == 2


def test_waiting_for_a_job_that_fails_exits_4(live_server: LiveServer,
                                              reference_files: dict[str, Path]) -> None:
    """A job whose speaker is deleted while it waits in the queue fails when it starts."""
    key = live_server.create_key()
    with VoiceReel(live_server.base_url, key) as client:
        alice = client.create_speaker("Alice", reference_files["Alice"])
        bob = client.create_speaker("Bob", reference_files["Bob"])
        # The server has one worker: a long job keeps the second one queued.
        blocker = client.synthesize([{"speaker_id": alice.id,
                                      "text": "This line keeps the only worker busy."}] * 30)
        doomed = client.synthesize([{"speaker_id": bob.id, "text": "Never rendered."}])
        deadline = time.monotonic() + 120
        while client.get_job(blocker).status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.get_job(doomed).status == "queued"
        client.delete_speaker(bob.id)
        client.delete_job(blocker)

    waited = _run(live_server, key, "jobs", "wait", doomed.job_id)
    assert waited.returncode == 4
    assert f"job {doomed.job_id} failed" in waited.stderr and "deleted" in waited.stderr


def test_fix_one_line_of_a_screenplay(live_server: LiveServer,
                                      reference_files: dict[str, Path],
                                      tmp_path: Path) -> None:
    key = live_server.create_key()
    with VoiceReel(live_server.base_url, key) as client:
        for name in ("Alice", "Bob"):
            client.create_speaker(name, reference_files[name])
    script = tmp_path / "dialogue.txt"
    script.write_text(SCREENPLAY)
    first = _run(live_server, key, "synthesize", str(script), "--wait", "--json",
                 "--captions", "vtt,ttml,json", "--caption-style", "bbc")
    assert first.returncode == 0, first.stderr
    job = json.loads(first.stdout)["job"]
    job_id = job["id"]
    assert set(job["result"]["captions"]) == {"vtt", "ttml", "json", "report"}
    assert httpx.get(job["result"]["captions"]["report"]["url"]).json()["style"] == "bbc"

    unchanged = _run(live_server, key, "synthesize", str(script), "--revise", job_id)
    assert unchanged.returncode == 0 and "nothing to render" in unchanged.stderr

    script.write_text(SCREENPLAY.replace("Let us begin.", "Let us begin, then."))
    fixed = _run(live_server, key, "synthesize", str(script), "--revise", job_id, "--out",
                 "out", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert f"Revision 2 of {job_id}: rendering 1 line" in fixed.stderr
    assert fixed.stdout.split()[:2] == [job_id, "succeeded"]
    captions = json.loads((tmp_path / "out" / f"{job_id}-captions.json").read_text())
    assert captions["segments"][2]["text"] == "Let us begin, then."

    retake = _run(live_server, key, "jobs", "retake", job_id, "--line", "1", "--seed", "7",
                  "--wait")
    assert retake.returncode == 0, retake.stderr
    revised = _run(live_server, key, "jobs", "revise", job_id, "--line", "0", "--speaker",
                   "bob", "--delete", "2", "--json")
    assert revised.returncode == 0, revised.stderr
    assert json.loads(revised.stdout)["lines_to_render"] == [0]
    with VoiceReel(live_server.base_url, key) as client:
        client.wait(job_id, timeout=120)
        revisions = client.revisions(job_id)
    assert [r.number for r in revisions] == [1, 2, 3, 4]
    rendered_by = [[t.rendered_in for t in r.takes] for r in revisions]
    assert rendered_by == [[1, 1, 1], [1, 1, 2], [1, 3, 2], [4, 3]]
    assert revisions[2].takes[1].seed == 7
    assert revisions[3].edits == [{"line": 0, "speaker_id": revisions[0].request["script"][1][
        "speaker_id"]}, {"delete": 2}]
    bad = _run(live_server, key, "jobs", "revise", job_id, "--line", "9", "--text", "No.")
    assert bad.returncode == 3 and "line 9 does not exist" in bad.stderr


def test_keys_commands(live_server: LiveServer, tmp_path: Path) -> None:
    """The operator makes a tenant's first owner key in the database; the owner then creates,
    lists, rotates and revokes keys through the API."""
    tenant = f"t-{time.time_ns()}"
    made = subprocess.run([sys.executable, "-m", "voicereel", "keys", "create", "--tenant",
                           tenant, "--role", "owner", "--name", "first"],
                          env=live_server.env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "(owner)" in made.stdout
    owner = made.stdout.strip().splitlines()[-1]

    created = _run(live_server, owner, "keys", "create", "--role", "viewer", "--name", "ci",
                   "--json")
    assert created.returncode == 0, created.stderr
    viewer = json.loads(created.stdout)
    assert viewer["role"] == "viewer" and viewer["key"].startswith("vr_")
    plain = _run(live_server, owner, "keys", "create", "--role", "billing")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().startswith("vr_")  # stdout is the key alone

    listed = _run(live_server, owner, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "PREFIX", "ROLE", "NAME"]
    assert {row.split()[2] for row in rows} == {"owner", "viewer", "billing"}
    assert viewer["key"] not in listed.stdout and owner not in listed.stdout

    refused = _run(live_server, viewer["key"], "keys", "list")
    assert refused.returncode != 0 and "scope" in refused.stderr

    rotated = _run(live_server, owner, "keys", "rotate", viewer["id"], "--grace", "0")
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip().splitlines()[-1]
    assert new_key != viewer["key"]
    assert _run(live_server, new_key, "speakers", "list").returncode == 0
    expired = _run(live_server, viewer["key"], "speakers", "list")
    assert expired.returncode != 0 and "expired" in expired.stderr

    owner_id = next(row.split()[0] for row in rows if row.split()[2] == "owner")
    last = _run(live_server, owner, "keys", "revoke", owner_id)
    assert last.returncode != 0 and "last owner" in last.stderr
    new_id = json.loads(_run(live_server, owner, "keys", "list", "--json").stdout)[0]["id"]
    assert _run(live_server, owner, "keys", "revoke", new_id).returncode == 0
    gone = _run(live_server, new_key, "speakers", "list")
    assert gone.returncode != 0 and "revoked" in gone.stderr
