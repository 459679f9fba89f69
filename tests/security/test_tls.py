"""`voicereel serve --tls-self-signed` speaks TLS 1.3 only, and answers over TLS carry HSTS."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.chaos.cluster import free_port
from voicereel import operations, tls
from voicereel.api.app import create_app
from voicereel.client import VoiceReel
from voicereel.client.errors import ConnectionFailed
from voicereel.services import build_services
from voicereel.settings import Settings

START_SECONDS = 120.0


def test_serve_over_tls_13_only(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "VOICEREEL_DATA_DIR": str(tmp_path / "data"),
           "VOICEREEL_DATABASE_URL": f"sqlite:///{tmp_path / 'voicereel.db'}"}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "voicereel", "serve", "--port", str(port),
                                 "--tls-self-signed"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        cert = tmp_path / "data" / "tls" / "self-signed-cert.pem"
        base = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if cert.exists() and httpx.get(f"{base}/healthz", verify=ssl.create_default_context(
                        cafile=str(cert))).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        answer = httpx.get(f"{base}/v1/speakers",
                           verify=ssl.create_default_context(cafile=str(cert)))
        assert answer.status_code == 401
        assert answer.headers["strict-transport-security"].startswith("max-age=31536000")
        assert f"https://127.0.0.1:{port}" in log_path.read_text()

        modern = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=modern) as client:
            assert client.get(f"{base}/healthz").status_code == 200
        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with httpx.Client(verify=old) as client, pytest.raises(httpx.ConnectError):
            client.get(f"{base}/healthz")
        # plain http on the TLS port is not served
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)

        # openssl connects with TLS 1.3 and is refused with 1.2
        for version, succeeds in (("-tls1_3", True), ("-tls1_2", False)):
            done = subprocess.run(["openssl", "s_client", version, "-connect",
                                   f"127.0.0.1:{port}", "-CAfile", str(cert)],
                                  input="", capture_output=True, text=True, timeout=30)
            assert (done.returncode == 0) is succeeds, (version, done.stdout, done.stderr)
            if succeeds:
                assert "TLSv1.3" in done.stdout and "Verify return code: 0 (ok)" in done.stdout

        # the SDK and the CLI, with the CA file or without checking
        services = build_services(Settings(data_dir=tmp_path / "data",
                                           database_url=env["VOICEREEL_DATABASE_URL"]))
        key = operations.create_key(services, "tls")
        services.db.dispose()
        with VoiceReel(base, key, verify=str(cert), max_retries=0) as sdk:
            assert sdk.list_speakers().items == []
        with VoiceReel(base, key, verify=False, max_retries=0) as sdk:
            assert sdk.list_speakers().items == []
        with VoiceReel(base, key, max_retries=0) as sdk, pytest.raises(ConnectionFailed):
            sdk.list_speakers()  # the system's CAs do not know the development certificate
        cli_env = {**env, "VOICEREEL_URL": base, "VOICEREEL_API_KEY": key}
        for extra, code in ((["--ca-file", str(cert)], 0), (["--insecure"], 0), ([], 5)):
            listed = subprocess.run([sys.executable, "-m", "voicereel", "speakers", "list",
                                     *extra], env=cli_env, capture_output=True, text=True,
                                    timeout=120)
            assert listed.returncode == code, (extra, listed.stderr)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_self_signed_certificate_is_made_once(tmp_path: Path) -> None:
    cert, key = tls.self_signed(tmp_path, "voicereel.internal")
    assert key.stat().st_mode & 0o777 == 0o600
    first = cert.read_bytes()
    assert tls.self_signed(tmp_path, "voicereel.internal") == (cert, key)
    assert cert.read_bytes() == first  # reused
    tls.self_signed(tmp_path, "10.1.2.3")  # another host: a new certificate covers it
    assert cert.read_bytes() != first
    context = tls.tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_hsts_only_over_https(tmp_path: Path) -> None:
    services = build_services(Settings(data_dir=tmp_path / "data"))
    services.db.migrate()
    app = create_app(services.settings, services)
    try:
        assert "strict-transport-security" not in TestClient(app).get("/healthz").headers
        secure = TestClient(app, base_url="https://testserver").get("/healthz")
        assert secure.headers["strict-transport-security"] == "max-age=31536000"
        off = create_app(Settings(data_dir=tmp_path / "data", hsts_max_age_seconds=0), services)
        plain = TestClient(off, base_url="https://testserver").get("/healthz")
        assert "strict-transport-security" not in plain.headers
    finally:
        services.db.dispose()


def test_tls_12_is_accepted_only_when_the_setting_allows_it() -> None:
    assert Settings().tls_min_version == "1.3"
    strict = tls.tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    relaxed = tls.tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), allow_tls12=True)
    assert strict.minimum_version == ssl.TLSVersion.TLSv1_3
    assert relaxed.minimum_version == ssl.TLSVersion.TLSv1_2
