"""A real `voicereel serve` subprocess on a free loopback port, for the tests that speak HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.chaos.cluster import free_port

READY_TIMEOUT_SECONDS = 180.0


@dataclass
class ServeProcess:
    base_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]  # the server's whole environment

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def voicereel_serve(root: Path, database_url: str, env: dict[str, str] | None = None,
                    ready_timeout: float = READY_TIMEOUT_SECONDS,
                    log_name: str = "serve.log", args: tuple[str, ...] = ()
                    ) -> Iterator[ServeProcess]:
    """`voicereel serve` on `root / "data"` and `database_url`, with this process's environment
    updated by `env`; yielded once GET /readyz answers 200, terminated (or killed) on exit.

    `log_name` may hold `{port}`, for several servers one after another in the same root;
    `args` are more options of `voicereel serve` (e.g. `("--workers", "2")`).
    """
    full_env = {**os.environ, "VOICEREEL_DATA_DIR": str(root / "data"),
                "VOICEREEL_DATABASE_URL": database_url, **(env or {})}
    port = free_port()
    log_path = root / log_name.format(port=port)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "voicereel", "serve", "--port", str(port),
                                 *args],
                                env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ServeProcess(f"http://127.0.0.1:{port}", proc, log_path, full_env)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            assert proc.poll() is None, server.log()
            try:
                if httpx.get(f"{server.base_url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server never became ready:\n{server.log()}"
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
