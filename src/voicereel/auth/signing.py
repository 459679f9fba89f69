"""HMAC-SHA256 request signatures (docs/security.md describes the scheme for customers).

A key created with `--require-signature` gets a signing secret. Each request then carries

    VoiceReel-Timestamp: <unix seconds>
    VoiceReel-Signature: v1=<hex HMAC-SHA256(secret, canonical string)>

where the canonical string is four lines joined by "\\n":

    <timestamp>
    <METHOD>
    <path and query exactly as sent in the request line>
    <hex SHA-256 of the raw body (of b"" when there is none)>

The server accepts timestamps within +-`signature_tolerance_seconds`, compares in constant time,
and remembers accepted signatures until they leave that window so that each is used once.
The signing secret is stored encrypted (AES-256-GCM) under a key derived from the service
secret, because the server must read it back to verify; rotating the service secret therefore
invalidates every signing secret (issue new keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError

from voicereel.db import repo
from voicereel.db.session import Database
from voicereel.errors import (
    SignatureMismatch,
    SignatureMissing,
    SignatureReplayed,
    SignatureStale,
)

TIMESTAMP_HEADER = "VoiceReel-Timestamp"
SIGNATURE_HEADER = "VoiceReel-Signature"
SCHEME = "v1"
_SECRET_PREFIX = "vrs_"
_CIPHER_VERSION = "v1:"


def new_signing_secret() -> str:
    return _SECRET_PREFIX + secrets.token_urlsafe(32)


def canonical_string(timestamp: str, method: str, target: str, body_sha256: str) -> str:
    """The text that is signed: timestamp, method, path with query, body hash, one per line."""
    return f"{timestamp}\n{method.upper()}\n{target}\n{body_sha256}"


def sign(secret: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The `VoiceReel-Signature` header value for a request (what a client computes)."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{SCHEME}={_hmac(secret, canonical_string(timestamp, method, target, digest))}"


def _hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify(db: Database, secret: str, headers: Mapping[str, str], method: str, target: str,
           body_sha256: str, tolerance_seconds: int, now: float | None = None) -> None:
    """Raise a `SignatureInvalid` subclass unless the request is signed, fresh and new."""
    timestamp = headers.get(TIMESTAMP_HEADER.lower(), "").strip()
    header = headers.get(SIGNATURE_HEADER.lower(), "").strip()
    if not timestamp or not header:
        raise SignatureMissing(f"this key requires signed requests: send {TIMESTAMP_HEADER} "
                               f"and {SIGNATURE_HEADER} (see docs/security.md)")
    # isdigit() alone also accepts digits int() cannot read, such as "²" (sent as byte 0xB2)
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise SignatureStale(f"{TIMESTAMP_HEADER} must be Unix time in whole seconds")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise SignatureStale(f"the timestamp is more than {tolerance_seconds} s from the "
                             f"server's clock ({int(now)})")
    expected = _hmac(secret, canonical_string(timestamp, method, target, body_sha256))
    sent = header.removeprefix(f"{SCHEME}=")
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        raise SignatureMismatch("the signature does not match the request; sign timestamp, "
                                "method, path with query and the body's SHA-256")
    expires_at = datetime.fromtimestamp(int(timestamp), UTC) + timedelta(
        seconds=tolerance_seconds + 1)
    try:
        with db.session() as session:
            repo.add_seen_signature(session, expected, expires_at)
    except IntegrityError:
        raise SignatureReplayed("this signature was already used; sign each request anew "
                                "with a fresh timestamp") from None


def _cipher(service_secret: bytes) -> AESGCM:
    key = hmac.new(service_secret, b"voicereel api-key signing secrets", hashlib.sha256).digest()
    return AESGCM(key)


def encrypt_secret(service_secret: bytes, plaintext: str) -> str:
    nonce = os.urandom(12)
    sealed = _cipher(service_secret).encrypt(nonce, plaintext.encode(), None)
    return _CIPHER_VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt_secret(service_secret: bytes, stored: str) -> str:
    """The plaintext signing secret; ValueError when the service secret changed since."""
    raw = base64.urlsafe_b64decode(stored.removeprefix(_CIPHER_VERSION))
    try:
        return _cipher(service_secret).decrypt(raw[:12], raw[12:], None).decode()
    except InvalidTag as exc:
        raise ValueError("the signing secret cannot be decrypted with this service secret") \
            from exc
