"""`voicereel serve --workers 2`: two API processes on one port, each with its inline runner,
serve one set of jobs through the database (issue 16)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.serve import voicereel_serve
from voicereel import operations
from voicereel.observability import PROCESS_HEADER
from voicereel.services import build_services
from voicereel.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"
JOB_SECONDS = 120.0


def _client_of_another_process(base_url: str, key: str, not_pid: str,
                               tries: int = 200) -> tuple[httpx.Client, str]:
    """A keep-alive connection answered by an API process other than `not_pid`."""
    for _ in range(tries):
        client = httpx.Client(base_url=base_url, timeout=30,
                              headers={"Authorization": f"Bearer {key}"})
        pid = client.get("/healthz").headers[PROCESS_HEADER]
        if pid != not_pid:
            return client, pid
        client.close()
    raise AssertionError(f"every one of {tries} connections was answered by process {not_pid}")


def test_a_job_submitted_to_one_process_is_polled_on_the_other(
        tmp_path: Path, reference_wavs: dict[str, bytes]) -> None:
    # SQLite only: two piper processes start for ~15 s; PostgreSQL claims jobs with the same
    # statements, which tests/unit and tests/api run on both databases.
    database_url = f"sqlite:///{tmp_path / 'voicereel.db'}"
    services = build_services(Settings(data_dir=tmp_path / "data", database_url=database_url))
    with voicereel_serve(tmp_path, database_url, args=("--workers", "2"),
                         env={"VOICEREEL_RATE_LIMIT_REDIS_URL": REDIS_URL}) as server:
        key = operations.create_key(services, "workers")
        first = httpx.Client(base_url=server.base_url, timeout=120,
                             headers={"Authorization": f"Bearer {key}"})
        r = first.post("/v1/speakers", data={"name": "Alice"},
                       files={"audio": ("a.wav", reference_wavs["Alice"], "audio/wav")})
        assert r.status_code == 201, r.text
        speaker = r.json()["id"]
        first_pid = r.headers[PROCESS_HEADER]
        second, second_pid = _client_of_another_process(server.base_url, key, first_pid)
        assert {first_pid, second_pid} <= {str(server.pid), *_children(server.pid)}

        # A job submitted to each process; each is claimed once, by one of them.
        job_ids = []
        for client in (first, second):
            r = client.post("/v1/synthesize",
                            json={"script": [{"speaker_id": speaker, "text": "Hello."}]})
            assert r.status_code == 202, r.text
            job_ids.append(r.json()["job_id"])
        assert r.headers[PROCESS_HEADER] == second_pid

        deadline = time.monotonic() + JOB_SECONDS
        for index, job_id in enumerate(job_ids):
            poller, poller_pid = (second, second_pid) if index == 0 else (first, first_pid)
            while (r := poller.get(f"/v1/jobs/{job_id}")).json()["status"] in ("queued",
                                                                                 "running"):
                assert time.monotonic() < deadline, r.json()
                time.sleep(0.1)
            assert r.headers[PROCESS_HEADER] == poller_pid
            job = r.json()
            assert job["status"] == "succeeded", job
            assert job["attempts"] == 1, job  # never claimed by both processes
        audio = first.get(second.get(f"/v1/jobs/{job_ids[0]}").json()["result"]["audio"]["url"])
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        first.close()
        second.close()
    services.db.dispose()


def _children(pid: int) -> list[str]:
    """The pids of the process's children (uvicorn's worker processes)."""
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
