"""Hostile webhook receivers and resolvers (hardening item 5), all on loopback.

- a receiver that trickles its answer, or streams one forever, costs one attempt bounded by the
  attempt's deadline, and no thread outlives the attempt;
- a delivery whose first attempt failed is sent after the server was killed (SIGKILL) or
  stopped (SIGTERM) and started again;
- a host that resolves to a public address for the check and to loopback afterwards (DNS
  rebinding) is not reached: one resolution per attempt, the connection goes to that address
  (tests/api/test_webhooks.py checks that the Host header stays the URL's);
- NAT64, 6to4, site-local, IPv4-mapped and -compatible forms of private addresses are refused,
  and refusals do not name the address the host resolved to.

Only `socket.getaddrinfo` is replaced (in process; there is no DNS server here), and only for
the made-up host names below; every connection is real.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.trust_helpers import add_speaker_row, caller
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.domain.script import SynthesisRequest
from voicereel.jobs.runners.inline import InlineRunner
from voicereel.services import Services, build_services
from voicereel.settings import Settings

DEADLINE_SECONDS = 3.0  # webhook_timeout_seconds of these tests
READY_TIMEOUT_SECONDS = 180


# --- receivers --------------------------------------------------------------------------------


class HostileReceiver:
    """A raw TCP server on loopback that reads a request, then answers in a hostile way.

    `trickle-body`: status and headers at once, then the body one byte per second.
    `trickle-headers`: the status line, then header bytes one per second.
    `endless`: a 200 without length, then 64 KiB every 50 ms for as long as it is read.
    Each connection ends when the client hangs up, or after 90 s at most.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[float] = []  # monotonic time each request was read
        self.closed_after: list[float] = []  # seconds from request to the client hanging up
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            started = time.monotonic()
            self.requests.append(started)
            try:
                if self.mode == "trickle-body":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    pause, piece = 1.0, b"x"
                elif self.mode == "trickle-headers":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    pause, piece = 1.0, b"a"
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                    pause, piece = 0.05, b"y" * 65536
                while not self._stop.is_set() and time.monotonic() - started < 90:
                    conn.sendall(piece)
                    self._stop.wait(pause)
            except OSError:  # the client hung up: what a bounded delivery does
                self.closed_after.append(time.monotonic() - started)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accepter.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


class Receiver:
    """A plain HTTP receiver on loopback answering the given statuses in turn."""

    def __init__(self, statuses: list[int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.statuses = statuses
        self.received: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({k.lower(): v for k, v in self.headers.items()})
                status = receiver.statuses[min(len(receiver.received), len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://{host}:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# --- an app with a real runner ----------------------------------------------------------------


def _app(database_url: str, tmp_path: Path, **overrides: Any) -> tuple[Services, str]:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data", "database_url": database_url,
        "sweep_interval_seconds": 0.5, "webhook_allow_private": True,
        "webhook_timeout_seconds": DEADLINE_SECONDS, "webhook_max_attempts": 1,
        "webhook_backoff_seconds": 0.2}
    services = build_services(Settings(**{**values, **overrides}))
    services.db.migrate()
    return services, operations.create_key(services, f"t-{os.urandom(4).hex()}")


@dataclass
class App:
    client: TestClient  # carries the key of a tenant of its own
    services: Services


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path) -> Iterator[Callable[..., App]]:
    """In-process apps with their runner, on the test's database."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> App:
            services, key = _app(database_url, tmp_path, **overrides)
            stack.callback(services.db.dispose)
            client = stack.enter_context(TestClient(create_app(services.settings, services)))
            client.headers["Authorization"] = f"Bearer {key}"
            return App(client, services)

        yield make


def _submit_failing_job(app: App, callback_url: str | None) -> str:
    """A job that the app's runner fails fast: its speaker is deleted before it runs."""
    services = app.services
    tenant = caller(services, app.client.headers["Authorization"].split()[1])[1]
    speaker = add_speaker_row(services, tenant.id)
    body: dict[str, Any] = {"script": [{"speaker_id": speaker, "text": "Hello."}]}
    if callback_url:
        body["callback_url"] = callback_url
    # An idle runner only commits the row; the app's sweep (every 0.5 s) then runs the job.
    job = operations.submit_job(services, InlineRunner(services), tenant,
                                SynthesisRequest.model_validate(body))
    operations.delete_speaker(services, tenant, speaker)
    return job.id


def _wait_for(what: str, check: Callable[[], Any], timeout: float, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(poll)


def _attempts(app: App, job_id: str) -> list[dict[str, Any]]:
    view = app.client.get(f"/v1/jobs/{job_id}").json()
    attempts: list[dict[str, Any]] = view["webhook_attempts"]
    return attempts


# --- (b) trickling and endless receivers -----------------------------------------------------


@pytest.mark.parametrize("mode", ["trickle-body", "trickle-headers", "endless"])
def test_hostile_receiver_costs_one_bounded_attempt_and_no_thread(
        mode: str, app_factory: Callable[..., App]) -> None:
    app = app_factory()
    warm = _submit_failing_job(app, None)  # the runner's own threads start now, not later
    _wait_for("warm-up job fails", lambda: app.client.get(f"/v1/jobs/{warm}").json()["status"]
              == "failed", 60)
    time.sleep(1)
    baseline = threading.active_count()
    receiver = HostileReceiver(mode)
    try:
        job_id = _submit_failing_job(app, receiver.url)
        _wait_for("the receiver is called", lambda: receiver.requests, 60)
        attempts = _wait_for("an attempt is recorded", lambda: _attempts(app, job_id),
                             DEADLINE_SECONDS + 30)
        took = time.monotonic() - receiver.requests[0]
        print(f"\n{mode}: attempt recorded {took:.2f} s after the request "
              f"(deadline {DEADLINE_SECONDS} s); {attempts[0]}")
        # Liveness bound, generous: the deadline plus time for the database and the poll.
        assert took < DEADLINE_SECONDS + 10
        assert len(attempts) == 1
        if mode == "endless":  # the answer is cut off at the byte cap; its status counts
            assert attempts[0]["status_code"] == 200
        else:
            assert attempts[0]["status_code"] is None
            assert "no complete answer within" in attempts[0]["error"]
        _wait_for("the client hangs up", lambda: receiver.closed_after, 10)
    finally:
        receiver.close()  # joins its own threads
    _wait_for("threads back to the baseline", lambda: threading.active_count() <= baseline, 15)
    print(f"threads: baseline {baseline}, after {threading.active_count()}")
    assert not [t.name for t in threading.enumerate() if "webhook" in t.name]


# --- (c) durable deliveries: kill -9 between attempts ------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`voicereel serve` as a subprocess on the test's database and data dir."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self) -> None:
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "voicereel", "serve", "--port", str(port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{self.base}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log_path.read_text()[-3000:]
            time.sleep(0.2)

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_delivery_survives_a_restart_of_the_server(sig: int, database_url: str,
                                                   tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "VOICEREEL_DATA_DIR": str(data_dir),
           "VOICEREEL_DATABASE_URL": database_url, "VOICEREEL_WEBHOOK_ALLOW_PRIVATE": "true",
           "VOICEREEL_WEBHOOK_BACKOFF_SECONDS": "8", "VOICEREEL_SWEEP_INTERVAL_SECONDS": "0.5"}
    receiver = Receiver([500, 200])
    server = Server(env, tmp_path / "serve.log")
    services = build_services(Settings(data_dir=data_dir, database_url=database_url))
    try:
        server.start()
        key = operations.create_key(services, "restart")
        tenant = caller(services, key)[1]
        headers = {"Authorization": f"Bearer {key}"}
        speaker = add_speaker_row(services, tenant.id)
        response = httpx.post(f"{server.base}/v1/synthesize", headers=headers, json={
            "script": [{"speaker_id": speaker, "text": "Hello."}],
            "callback_url": receiver.url})
        assert response.status_code == 202, response.text
        job = response.json()["job_id"]
        # Usually before the job runs, so that it fails fast; if not, it renders and succeeds.
        httpx.delete(f"{server.base}/v1/speakers/{speaker}", headers=headers)

        def attempts() -> list[dict[str, Any]]:
            view = httpx.get(f"{server.base}/v1/jobs/{job}", headers=headers).json()
            found: list[dict[str, Any]] = view["webhook_attempts"]
            return found

        first = _wait_for("the first attempt is recorded", attempts, 60)
        assert [a["status_code"] for a in first] == [500]
        server.kill(sig)  # the retry was 8 s away: only the database knows of it
        assert len(receiver.received) == 1
        restarted = time.monotonic()
        server.start()
        _wait_for("the delivery after the restart", lambda: len(receiver.received) >= 2, 120)
        print(f"\n{signal.Signals(sig).name}: delivered {time.monotonic() - restarted:.1f} s "
              f"after the restart began (backoff 8 s)")
        final = _wait_for("the second attempt is recorded", lambda: len(attempts()) == 2
                          and attempts(), 30)
        assert [(a["attempt"], a["status_code"]) for a in final] == [(1, 500), (2, 200)]
        time.sleep(1.5)  # three sweeps: a delivered callback is not sent again
        assert len(receiver.received) == 2
    finally:
        server.stop()
        receiver.close()
        services.db.dispose()


# --- (a) DNS rebinding and (d) refusals ------------------------------------------------------


class Resolver:
    """Answers for made-up host names, in turn (the last one repeats); the rest is real DNS."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: dict[str, int] = {}
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return self._real(host, port, *args, **kwargs)
        turn = self.calls.get(name, 0)
        self.calls[name] = turn + 1
        address = self.answers[name][min(turn, len(self.answers[name]) - 1)]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 \
            else (address, int(port or 0))
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]


# A globally routable address no test machine owns (the deprecated 6to4 relay anycast block,
# RFC 7526); a connection to it fails within the deadline, and nothing answers it on loopback.
PUBLIC_ADDRESS = "192.88.99.1"


def test_dns_rebinding_cannot_reach_loopback(app_factory: Callable[..., App],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver([200])
    host = "hooks.rebind.test"
    # Public while checked (submission, then the attempt), loopback on any later look-up.
    resolver = Resolver({host: [PUBLIC_ADDRESS, PUBLIC_ADDRESS, "127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    try:
        app = app_factory(webhook_allow_private=False, webhook_timeout_seconds=2.0)
        job_id = _submit_failing_job(app, f"http://{host}:{receiver.port}/hook")
        attempts = _wait_for("an attempt is recorded", lambda: _attempts(app, job_id), 60)
        print(f"\nlook-ups of {host}: {resolver.calls[host]}; attempt: {attempts[0]}")
        assert receiver.received == []  # the loopback answer was never connected to
        assert resolver.calls[host] == 2  # once at submission, once for the one attempt
        assert attempts[0]["status_code"] is None
        assert "127.0.0.1" not in attempts[0]["error"]
    finally:
        receiver.close()


HIDDEN_PRIVATE = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "fec0::1",  # site-local
    "::ffff:7f00:1",  # IPv4-mapped 127.0.0.1, written in hex
    "::127.0.0.1",  # IPv4-compatible
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "ff0e::1",  # global-scope multicast
    "224.0.0.1",  # multicast
]


@pytest.mark.parametrize("address", HIDDEN_PRIVATE)
def test_hidden_private_addresses_are_refused_without_naming_them(
        address: str, app_factory: Callable[..., App],
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = "internal.example.test"
    monkeypatch.setattr(socket, "getaddrinfo", Resolver({host: [address]}))
    client = app_factory(webhook_allow_private=False).client
    literal = f"[{address}]" if ":" in address else address
    for url in (f"http://{literal}/hook", f"https://{host}/hook"):
        response = client.post("/v1/synthesize", json={
            "script": [{"speaker_id": "spk_x", "text": "Hi."}], "callback_url": url})
        assert response.status_code == 422, (url, response.text)
        body = response.json()
        assert body["type"].endswith("/callback-url-refused"), body
        shown = response.text.replace(url, "")  # the URL the caller sent may be echoed
        assert address not in shown and literal not in shown, shown
        assert "non-public address" in body["errors"][0]["msg"]


@pytest.mark.parametrize("address", ["10.1.2.3", "169.254.169.254", "::ffff:10.0.0.1",
                                     "fd00::1234"])
def test_refusal_does_not_name_the_resolved_address(
        address: str, app_factory: Callable[..., App], monkeypatch: pytest.MonkeyPatch) -> None:
    host = "internal.example.test"
    monkeypatch.setattr(socket, "getaddrinfo", Resolver({host: [address]}))
    client = app_factory(webhook_allow_private=False).client
    response = client.post("/v1/synthesize", json={
        "script": [{"speaker_id": "spk_x", "text": "Hi."}],
        "callback_url": f"https://{host}/hook"})
    assert response.status_code == 422, response.text
    parsed = ipaddress.ip_address(address)
    forms = {address, str(parsed), parsed.exploded}
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        forms.add(str(parsed.ipv4_mapped))
    print(f"\n{address}: {response.json()['detail']}")
    assert not [form for form in forms if form in response.text], response.text
    assert "resolves to a non-public address" in response.json()["detail"]
