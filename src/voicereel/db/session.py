"""Database connections: one `Database` per process, sessions per unit of work."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


SQLITE_BUSY_SECONDS = 30  # how long a writer waits for another one to finish


class Database:
    """An SQLAlchemy engine plus a session factory for SQLite (WAL) or PostgreSQL."""

    def __init__(self, url: str, pool_size: int = 5) -> None:
        self.url = url
        # Connections above the pool are closed when given back; a pool smaller than the
        # requests in flight opened (and set up) a connection per request under load.
        kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 10}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS}
        else:
            # A server may drop idle connections; a file cannot, so SQLite skips the ping.
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        self.writer_turns: _WriterTurns | None = None
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self.writer_turns = _WriterTurns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reads(self) -> Iterator[Session]:
        """A session for reads only, each statement committed on its own: no BEGIN and COMMIT
        round trips, for a frequent view whose statements need not see one instant (a job
        poll)."""
        if self.engine.dialect.name == "sqlite":  # its driver begins only before a write
            with self._sessions() as session:
                yield session
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn, \
                Session(bind=conn) as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A session that reads the database as it was at one instant, while writers go on
        (PostgreSQL: a repeatable-read transaction; SQLite: a copy by its online backup)."""
        if self.engine.dialect.name != "sqlite":
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with Session(bind=conn) as session, session.begin():
                    yield session
            return
        with tempfile.TemporaryDirectory(prefix="voicereel-snapshot-") as folder:
            copy = Path(folder) / "snapshot.db"
            raw = self.engine.raw_connection()
            try:
                target = sqlite3.connect(copy)
                raw.driver_connection.backup(target)  # type: ignore[union-attr]
                target.close()
            finally:
                raw.close()
            frozen = Database(f"sqlite:///{copy}")
            try:
                with frozen.session() as session:
                    yield session
            finally:
                frozen.dispose()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest Alembic revision (or to `revision`)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "WITH")


class _WriterTurns:
    """SQLite: this process's writing transactions take turns on a lock of their own.

    SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps
    1, 2, 5 ... up to 100 ms between tries, so under many writers a turn came late (seconds at
    the p99 of submissions). Here the next writer of this process is woken as the last one
    commits; writers of other processes still wait in the busy handler.
    """

    def __init__(self, engine: Engine) -> None:
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._before_execute)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)
        # A connection given back to the pool gives its turn back too, whatever happened.
        event.listen(engine.pool, "checkin", lambda _dbapi, record: self._end(record))

    def _before_execute(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not conn.info.get("writer_turn") and statement.lstrip()[:7].upper().startswith(
                _WRITES):
            # as long as SQLite itself would wait, then its own "database is locked" error
            if not self._lock.acquire(timeout=SQLITE_BUSY_SECONDS):
                raise sqlite3.OperationalError("database is locked (no writer turn within "
                                               f"{SQLITE_BUSY_SECONDS} s)")
            conn.info["writer_turn"] = True

    def held(self) -> bool:
        return self._lock.locked()

    def _end(self, conn: Any) -> None:
        if conn.info.pop("writer_turn", False):
            self._lock.release()
