"""TLS for `voicereel serve`: TLS 1.3 only, and a self-signed certificate to try it with.

A self-signed certificate is for development and private networks: clients must be told to
trust it (its file is printed at start); production serves a CA-issued certificate
(`--tls-cert/--tls-key`) or terminates TLS in front of the service.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SELF_SIGNED_DAYS = 365


def tls13_only(context: ssl.SSLContext, allow_tls12: bool = False) -> ssl.SSLContext:
    """Refuse every protocol version before TLS 1.3 (and so their weaker cipher suites), or
    with `allow_tls12` (`VOICEREEL_TLS_MIN_VERSION=1.2`, for old clients) before TLS 1.2."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2 if allow_tls12 else ssl.TLSVersion.TLSv1_3
    return context


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """The certificate and key files of a self-signed certificate for `host`, localhost and
    the loopback addresses; made once in `directory` and reused while it covers the host and
    has a week left."""
    cert_path, key_path = directory / "self-signed-cert.pem", directory / "self-signed-key.pem"
    names = _names(host)
    if cert_path.exists() and key_path.exists() and _still_good(cert_path, names):
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host or "localhost"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VoiceReel (self-signed)")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    # the key is written readable by its owner only, before any byte of it is
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1"))]
    try:
        address = x509.IPAddress(ipaddress.ip_address(host))
        if address not in names:
            names.append(address)
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    return names


def _still_good(cert_path: Path, names: list[x509.GeneralName]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        covered = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    fresh = cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=7)
    return fresh and all(name in covered for name in names)
