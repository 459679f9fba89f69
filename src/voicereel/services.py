"""The long-lived things a process needs to run jobs, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

from voicereel.db.session import Database
from voicereel.engines.base import Engine
from voicereel.engines.registry import make_engine
from voicereel.settings import Settings
from voicereel.storage import make_storage
from voicereel.storage.base import Storage


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: Storage
    engine: Engine
    signing_secret: bytes  # the service secret, resolved once (it may live in a file)


def build_services(settings: Settings) -> Services:
    secret = settings.resolved_signing_secret()
    return Services(settings=settings, db=Database(settings.resolved_database_url),
                    storage=make_storage(settings, secret), engine=make_engine(settings),
                    signing_secret=secret)
