"""A worker's job histograms, observed in forked pool processes, served on its metrics port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

# A worker in miniature: serve, then fork pool processes that each finish one job.
WORKER = textwrap.dedent("""
    import multiprocessing, os, sys
    from voicereel.observability import observe_job_finished, serve_worker_metrics

    def finish_a_job():
        observe_job_finished(seconds=3.0, audio_seconds=6.0, render_seconds=1.5)

    if __name__ == "__main__":
        serve_worker_metrics(int(sys.argv[1]), os.environ["PROMETHEUS_MULTIPROC_DIR"],
                             host="127.0.0.1")
        fork = multiprocessing.get_context("fork")
        pool = [fork.Process(target=finish_a_job) for _ in range(2)]
        for process in pool:
            process.start()
        for process in pool:
            process.join(timeout=30)
        finish_a_job()
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes stdin (or ends)
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_pool_processes_observations_add_up(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    proc = subprocess.Popen([sys.executable, str(script), str(port)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    samples = {s.name: s.value for family in text_string_to_metric_families(text)
               for s in family.samples if not s.labels.get("le")}
    assert samples["voicereel_job_duration_seconds_count"] == 3
    assert samples["voicereel_job_duration_seconds_sum"] == 9.0
    assert samples["voicereel_engine_real_time_factor_count"] == 3
    assert samples["voicereel_engine_real_time_factor_sum"] == 0.75
