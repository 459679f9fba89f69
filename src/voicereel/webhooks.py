"""Job callbacks: a signed POST of the finished job to the customer's `callback_url`.

Each delivery carries `VoiceReel-Webhook-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256 over `<t>.<raw body>` with the tenant's webhook secret (GET /v1/webhook-secret).

Deliveries are an outbox: `repo` writes a `webhook_deliveries` row in the transaction that puts
a job with a callback URL in its final state, so neither a restart nor a crash loses one. The
runner that finished the job hands it to this process's pool (`send_soon`, at most
`webhook_workers` threads, which end when idle) and every sweep hands over whatever is due
(`send_due`), including deliveries of processes that died. A delivery that does not get a 2xx
answer is tried again after `webhook_backoff_seconds`, doubling, up to `webhook_max_attempts`;
every attempt is recorded and shown on the job.

One attempt: the host is resolved once and every address it gives must be public (loopback,
private, link-local, site-local, multicast, reserved, Teredo, and NAT64, 6to4 or IPv4-mapped
addresses whose IPv4 is not public are refused, unless `webhook_allow_private` is set); the
connection goes to that checked address, with the URL's host as Host header and TLS server
name, so a second DNS answer cannot redirect it. Connecting, sending and reading the answer
share one deadline (`webhook_timeout_seconds`), and at most `webhook_max_response_bytes` of the
answer are read. Redirects are not followed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

from voicereel.db import repo
from voicereel.db.tables import utcnow
from voicereel.errors import CallbackUrlRefused, NotFound
from voicereel.jobs import views
from voicereel.observability import job_log_context, observe_webhook_attempt
from voicereel.services import Services
from voicereel.settings import Settings

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "VoiceReel-Webhook-Signature"
# A delivery taken by a process is left alone this much longer than an attempt can last, so a
# process that dies mid-attempt leaves it due again soon after.
CLAIM_MARGIN_SECONDS = 30.0
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"),)
_ALWAYS_PRIVATE = (ipaddress.ip_network("fec0::/10"),  # site-local, deprecated but routable
                   ipaddress.ip_network("64:ff9b:1::/48"))  # local-use NAT64


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def webhook_secret(services: Services, tenant_id: str) -> str:
    """The tenant's webhook secret, made on first use."""
    with services.db.session() as session:
        return repo.tenant_webhook_secret(session, tenant_id, new_webhook_secret)


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for a delivery: `t=<timestamp>,v1=<hex>`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, tolerance_seconds: int = 300,
                     now: float | None = None) -> bool:
    """What a receiver does: check the header against the raw body and the clock."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    timestamp = parts.get("t", "")
    if not timestamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_seconds:
        return False
    expected = sign_payload(secret, int(timestamp), body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for a globally reachable unicast address, looking inside IPv6 forms that
    carry an IPv4 address (NAT64, 6to4, IPv4-mapped and -compatible)."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in net for net in _ALWAYS_PRIVATE) or address.teredo is not None:
            return False
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and (any(address in net for net in _NAT64)
                                 or int(address) >> 32 == 0):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not address.is_multicast


def check_callback_url(settings: Settings, url: str) -> None:
    """Refuse callback URLs that are not http(s) or that reach non-public addresses."""
    _split(url)
    if not settings.webhook_allow_private:
        pinned_address(settings, url)


def pinned_address(settings: Settings, url: str) -> str:
    """The one address a delivery to `url` connects to, resolved now and checked."""
    parts = _split(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        raise _refused(url, "its host does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise _refused(url, "its host does not resolve")
    # Every answer is checked, not just the one used: a mixed answer is a rebinding attempt.
    if not settings.webhook_allow_private and not all(map(is_public_address, addresses)):
        raise _refused(url, "its host resolves to a non-public address")
    return str(addresses[0])


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused(url, "it must be an http or https URL with a host")
    if parts.username or parts.password:
        raise _refused(url, "it must not carry credentials")
    try:
        parts.port  # noqa: B018 (an out-of-range port raises here)
    except ValueError:
        raise _refused(url, "its port is not valid") from None
    return parts


def _refused(url: str, why: str) -> CallbackUrlRefused:
    return CallbackUrlRefused(f"the callback URL is refused: {why}",
                              errors=[{"loc": ["body", "callback_url"], "msg": why}])


# --- sending ----------------------------------------------------------------------------------


class _Pool:
    """Posts callbacks on at most `webhook_workers` threads; a thread ends when none wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiting: deque[tuple[Services, str]] = deque()
        self._queued: set[str] = set()
        self._sending: list[Services] = []  # the services of each attempt under way
        self._threads = 0

    def drain(self, services: Services, timeout: float) -> None:
        """Drop `services`' waiting deliveries (their rows stay due for the next sweep) and
        wait up to `timeout` for its attempts under way, so nothing uses it after it stops."""
        with self._lock:
            kept = [(s, job_id) for s, job_id in self._waiting if s is not services]
            for s, job_id in self._waiting:
                if s is services:
                    self._queued.discard(job_id)
            self._waiting = deque(kept)
            self._idle.wait_for(lambda: all(s is not services for s in self._sending), timeout)

    def submit(self, services: Services, job_id: str) -> None:
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
            self._waiting.append((services, job_id))
            if self._threads >= services.settings.webhook_workers:
                return
            self._threads += 1
        threading.Thread(target=self._work, name="voicereel-webhook", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._threads -= 1
                    return
                services, job_id = self._waiting.popleft()
                self._sending.append(services)
            try:
                attempt(services, job_id)
            except Exception:
                log.exception("webhook for job %s: delivery crashed", job_id)
            finally:
                with self._lock:
                    self._queued.discard(job_id)
                    self._sending.remove(services)
                    self._idle.notify_all()


_pool = _Pool()


def send_soon(services: Services, job_id: str) -> None:
    """Post the job's callback on this process's pool if one is due (a runner's last step)."""
    _pool.submit(services, job_id)


def stop_sending(services: Services) -> None:
    """Before `services` shuts down: no new attempt starts, those under way end (an attempt
    takes at most `webhook_timeout_seconds`)."""
    _pool.drain(services, services.settings.webhook_timeout_seconds + 1)


def send_due(services: Services, limit: int = 100) -> int:
    """Hand every due delivery to the pool (the sweep's part); returns how many were due."""
    with services.db.session() as session:
        due = repo.due_webhook_deliveries(session, limit)
    for job_id in due:
        _pool.submit(services, job_id)
    return len(due)


def attempt(services: Services, job_id: str) -> str | None:
    """Make one attempt of the job's delivery if it is due and nobody else makes it.

    Returns the delivery's state afterwards (`pending`: another attempt is scheduled,
    `delivered`, `failed`: no attempts left, `canceled`: the job was deleted), or None when
    there was nothing to do.
    """
    settings = services.settings
    hold = settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS
    with services.db.session() as session:
        number = repo.claim_webhook_delivery(session, job_id, hold)
        if number is None:
            return None
        job = repo.load_job(session, job_id)
        if job is None or job.deleted_at is not None:
            repo.end_webhook_delivery(session, job_id, "canceled", "the job was deleted")
            return "canceled"
        url = str((job.request or {}).get("callback_url"))
        tenant_id, status, request_id = job.tenant_id, job.status, job.request_id
    with job_log_context(job_id, request_id):
        return _attempt(services, job_id, number, url, tenant_id, status)


def _attempt(services: Services, job_id: str, number: int, url: str, tenant_id: str,
             status: str) -> str:
    settings = services.settings
    secret = webhook_secret(services, tenant_id)
    try:
        view = views.job_view(services, tenant_id, job_id,
                              settings.public_url or "").model_dump(mode="json")
    except NotFound:
        with services.db.session() as session:
            repo.end_webhook_delivery(session, job_id, "canceled", "the job was deleted")
        return "canceled"
    body = json.dumps({"type": f"job.{status}", "job": view}, separators=(",", ":")).encode()
    status_code, error = post(settings, url, secret, body)
    next_at = None
    if status_code is not None and 200 <= status_code < 300:
        state = "delivered"
    elif number >= settings.webhook_max_attempts:
        state = "failed"
    else:
        state = "pending"
        next_at = utcnow() + timedelta(
            seconds=settings.webhook_backoff_seconds * 2 ** (number - 1))
    if state != "delivered":
        log.warning("webhook for job %s: attempt %d failed (%s)", job_id, number,
                    error or status_code)
    with services.db.session() as session:
        repo.record_webhook_attempt(session, job_id, number, status_code, error, state, next_at)
    observe_webhook_attempt(state)
    return state


def post(settings: Settings, url: str, secret: str, body: bytes) -> tuple[int | None, str | None]:
    """One signed POST to the pinned address, all within the attempt's deadline.

    Returns the answer's status (None without one) and an error for anything but a 2xx.
    """
    timeout = settings.webhook_timeout_seconds
    deadline = time.monotonic() + timeout
    try:
        address = pinned_address(settings, url)
    except CallbackUrlRefused as exc:
        return None, exc.detail
    headers = [(b"Content-Type", b"application/json"), (b"User-Agent", b"VoiceReel-Webhooks/1"),
               (SIGNATURE_HEADER.encode(), sign_payload(secret, int(time.time()), body).encode())]
    cap = settings.webhook_max_response_bytes
    try:
        pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), max_connections=1,
                                       network_backend=_PinnedBackend(address, deadline))
        with pool, pool.stream("POST", url, headers=headers, content=body) as response:
            _read_at_most(response.iter_stream(), cap)
            status_code = response.status
    except httpcore.TimeoutException:
        return None, f"no complete answer within the {timeout:g} s an attempt may take"
    except (httpcore.ProtocolError, httpcore.NetworkError, httpcore.UnsupportedProtocol,
            ssl.SSLError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    error = None if 200 <= status_code < 300 else f"HTTP {status_code}"
    return status_code, error


def _read_at_most(chunks: Iterable[bytes], cap: int) -> None:
    """Read the answer up to `cap` bytes; a longer one is cut off (its status still counts)."""
    read = 0
    for chunk in chunks:
        read += len(chunk)
        if read >= cap:
            return


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the attempt's deadline.

    A per-read timeout alone lets a receiver trickle one byte at a time forever.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the attempt's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(ssl_context, server_hostname,
                                       self._left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked address whatever host the URL names (which stays the Host
    header and the TLS server name)."""

    def __init__(self, address: str, deadline: float) -> None:
        self._address = address
        self._deadline = deadline
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the attempt's deadline passed")
        stream = self._backend.connect_tcp(self._address, port, left if timeout is None
                                           else min(timeout, left), local_address,
                                           socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("callbacks go over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
