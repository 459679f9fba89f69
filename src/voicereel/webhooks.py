"""Job callbacks: a signed POST of the finished job to the customer's `callback_url`.

Each delivery carries `VoiceReel-Webhook-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256 over `<t>.<raw body>` with the tenant's webhook secret (GET /v1/webhook-secret).
A delivery that does not get a 2xx answer is retried with exponential backoff
(`webhook_backoff_seconds`, doubling) up to `webhook_max_attempts`; every attempt is recorded
and shown on the job. Callback hosts that resolve to loopback, private, link-local or otherwise
non-public addresses are refused, at submission and again before each attempt (a DNS answer
may change), unless `webhook_allow_private` is set. Redirects are not followed.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from voicereel.db import repo
from voicereel.domain.jobs import CALLBACK_STATES
from voicereel.errors import CallbackUrlRefused
from voicereel.jobs import views
from voicereel.services import Services
from voicereel.settings import Settings

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "VoiceReel-Webhook-Signature"


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


def check_callback_url(settings: Settings, url: str) -> None:
    """Refuse callback URLs that are not http(s) or that reach non-public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused(url, "it must be an http or https URL with a host")
    if parts.username or parts.password:
        raise _refused(url, "it must not carry credentials")
    if settings.webhook_allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise _refused(url, "its host does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise _refused(url, f"its host resolves to the non-public address {address}")


def _refused(url: str, why: str) -> CallbackUrlRefused:
    return CallbackUrlRefused(f"the callback URL is refused: {why}",
                              errors=[{"loc": ["body", "callback_url"], "msg": why}])


_delivering: set[str] = set()
_delivering_lock = threading.Lock()


def deliver_job_webhook(services: Services, job_id: str) -> threading.Thread | None:
    """Deliver the job's callback in a background thread (None when there is nothing to do).

    Call it once a job reaches a final state. The thread ends by itself after at most
    `webhook_max_attempts` attempts.
    """
    with _delivering_lock:
        if job_id in _delivering:
            return None
        _delivering.add(job_id)
    # The caller's context carries the job's log ids into the delivery's log lines.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(_deliver_and_release, services, job_id),
                              name=f"webhook-{job_id}", daemon=True)
    thread.start()
    return thread


def _deliver_and_release(services: Services, job_id: str) -> None:
    try:
        deliver(services, job_id)
    except Exception:
        log.exception("webhook for job %s: delivery crashed", job_id)
    finally:
        with _delivering_lock:
            _delivering.discard(job_id)


def deliver(services: Services, job_id: str,
            sleep: Callable[[float], None] = time.sleep) -> bool:
    """Post the job to its callback URL until a 2xx answer or the attempts run out.

    True when delivered (now or before). Every attempt is recorded on the job.
    """
    settings = services.settings
    with services.db.session() as session:
        job = repo.load_job(session, job_id)
        if job is None or job.status not in CALLBACK_STATES:
            return False
        url = (job.request or {}).get("callback_url")
        if not url:
            return False
        attempts = repo.webhook_attempts(session, job_id)
        if any(a.status_code is not None and 200 <= a.status_code < 300 for a in attempts):
            return True
        tenant_id = job.tenant_id
        status = job.status
        first_attempt = len(attempts) + 1
    secret = webhook_secret(services, tenant_id)
    view = views.job_view(services, tenant_id, job_id,
                          settings.public_url or "").model_dump(mode="json")
    body = json.dumps({"type": f"job.{status}", "job": view}, separators=(",", ":")).encode()
    delay = settings.webhook_backoff_seconds
    for attempt in range(first_attempt, settings.webhook_max_attempts + 1):
        status_code, error = _post(settings, url, secret, body)
        with services.db.session() as session:
            repo.add_webhook_attempt(session, job_id, attempt, status_code, error)
        if status_code is not None and 200 <= status_code < 300:
            return True
        log.warning("webhook for job %s: attempt %d failed (%s)", job_id, attempt,
                    error or status_code)
        if attempt < settings.webhook_max_attempts:
            sleep(delay)
            delay *= 2
    return False


def _post(settings: Settings, url: str, secret: str, body: bytes) -> tuple[int | None, str | None]:
    try:
        check_callback_url(settings, url)
    except CallbackUrlRefused as exc:
        return None, exc.detail
    headers = {"Content-Type": "application/json", "User-Agent": "VoiceReel-Webhooks/1",
               SIGNATURE_HEADER: sign_payload(secret, int(time.time()), body)}
    try:
        with httpx.Client(timeout=settings.webhook_timeout_seconds,
                          follow_redirects=False) as client:
            response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return response.status_code, error
