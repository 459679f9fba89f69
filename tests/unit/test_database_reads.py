"""`Database.reads`: the session of a frequent view (job polls) reads without a transaction
of its own, so a poll costs no BEGIN or COMMIT round trip."""

from __future__ import annotations

from sqlalchemy import text

from voicereel.db.session import Database


def _in_transaction(dbapi_connection: object) -> bool:
    info = getattr(dbapi_connection, "info", None)  # psycopg
    if info is not None and hasattr(info, "transaction_status"):
        import psycopg

        return bool(info.transaction_status != psycopg.pq.TransactionStatus.IDLE)
    return bool(dbapi_connection.in_transaction)  # type: ignore[attr-defined]  # sqlite3


def test_reads_see_what_is_committed_without_a_transaction(database: Database) -> None:
    with database.session() as session:
        session.execute(text("CREATE TABLE polled (id INTEGER PRIMARY KEY)"))
        session.execute(text("INSERT INTO polled (id) VALUES (1), (2)"))
    with database.reads() as session:
        assert session.execute(text("SELECT count(*) FROM polled")).scalar() == 2
        dbapi_connection = session.connection().connection.dbapi_connection
        assert not _in_transaction(dbapi_connection)
    with database.session() as session:  # a writing session still holds one
        session.execute(text("INSERT INTO polled (id) VALUES (3)"))
        assert _in_transaction(session.connection().connection.dbapi_connection)
