"""HMAC-signed, expiring download URLs for locally stored files."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from voicereel.errors import UrlExpired, UrlInvalid

FILES_PATH = "/v1/files/"


def _signature(secret: bytes, key: str, expires: int, name: str) -> str:
    message = f"{key}\n{expires}\n{name}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_url(secret: bytes, key: str, ttl_seconds: int, name: str) -> str:
    """A relative URL for `key` that stops working after `ttl_seconds`."""
    expires = int(time.time()) + ttl_seconds
    query = urlencode({"expires": expires, "name": name,
                       "sig": _signature(secret, key, expires, name)})
    return f"{FILES_PATH}{key}?{query}"


def verify_url(secret: bytes, key: str, expires: str, name: str, sig: str) -> None:
    """Raise unless the signature is ours and the URL has not expired."""
    try:
        expires_at = int(expires)
    except ValueError as exc:
        raise UrlInvalid("the URL's expiry is not a number") from exc
    # bytes: compare_digest refuses non-ASCII str, and a URL can carry anything
    if not hmac.compare_digest(_signature(secret, key, expires_at, name).encode(), sig.encode()):
        raise UrlInvalid()
    if time.time() > expires_at:
        raise UrlExpired()
