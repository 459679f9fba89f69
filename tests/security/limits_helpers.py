"""A real `voicereel serve` subprocess on loopback for the limits and concurrency tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests import serve
from voicereel.db import repo
from voicereel.services import Services, build_services
from voicereel.settings import Settings


@dataclass
class Server:
    base_url: str
    proc: subprocess.Popen[bytes]
    services: Services  # on the server's database: keys, speaker rows, inspection
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def voicereel_serve(root: Path, database_url: str, **settings: str) -> Iterator[Server]:
    """`voicereel serve` with `VOICEREEL_<NAME>` set from `settings`; stopped (or killed)
    on exit. Several may run one after another on the same data dir and database."""
    env = {f"VOICEREEL_{name.upper()}": value for name, value in settings.items()}
    services = build_services(Settings(data_dir=root / "data", database_url=database_url))
    try:
        with serve.voicereel_serve(root, database_url, env, log_name="serve-{port}.log") as live:
            yield Server(live.base_url, live.proc, services, live.log_path)
    finally:
        services.db.dispose()


def tenant_of(services: Services, key: str) -> tuple[str, str]:
    """(api key id, tenant id) of a plaintext key."""
    with services.db.session() as session:
        found = repo.key_and_tenant(session, key)
    assert found is not None
    return found[0].id, found[1].id
