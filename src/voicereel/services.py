"""The long-lived things a process needs to run jobs, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from voicereel.db.session import Database
from voicereel.engines.base import Engine
from voicereel.engines.registry import engine_for, make_engine, unsupported
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
    fallback_engine: Engine | None = field(default=None)
    """VOICEREEL_LANGUAGE_FALLBACK_ENGINE, for lines the configured engine cannot speak."""

    def engine_for(self, lang: str) -> Engine:
        """The engine that renders a line in `lang` (LanguageUnsupported when none may)."""
        name = engine_for(self.settings, lang)
        if name is None:
            raise unsupported(self.settings, lang)
        if name == self.engine.name or self.fallback_engine is None:
            return self.engine
        return self.fallback_engine


def build_services(settings: Settings) -> Services:
    secret = settings.resolved_signing_secret()
    return Services(settings=settings, db=Database(settings.resolved_database_url,
                                                  settings.db_pool_size),
                    storage=make_storage(settings, secret), engine=make_engine(settings),
                    signing_secret=secret, fallback_engine=(
                        make_engine(settings, settings.language_fallback_engine)
                        if settings.language_fallback_engine
                        and settings.language_fallback_engine != settings.engine else None))
