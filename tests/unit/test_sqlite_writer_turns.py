"""SQLite: a process's writing transactions take turns on a lock of their own
(`db.session._WriterTurns`), held from the first write to the commit or rollback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from voicereel.db.session import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'turns.db'}")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    yield db
    db.dispose()


def test_a_turn_lasts_from_the_first_write_to_the_end(db: Database) -> None:
    turns = db.writer_turns
    assert turns is not None
    with db.session() as session:
        session.execute(text("SELECT count(*) FROM t"))
        assert not turns.held()  # reading takes no turn
        session.execute(text("INSERT INTO t (id) VALUES (1)"))
        assert turns.held()
    assert not turns.held()  # committed
    with pytest.raises(IntegrityError), db.session() as session:
        session.execute(text("INSERT INTO t (id) VALUES (2)"))
        session.execute(text("INSERT INTO t (id) VALUES (1)"))
    assert not turns.held()  # rolled back
    with db.engine.connect() as conn:  # closed without commit nor rollback
        conn.execute(text("UPDATE t SET id = 3 WHERE id = 1"))
        assert turns.held()
    assert not turns.held()


def test_a_second_writer_waits_for_the_first_to_commit(db: Database) -> None:
    """It then writes: the turn is handed on, not lost (a lost one hangs every writer)."""
    order: list[str] = []
    wrote = threading.Event()

    def second() -> None:
        wrote.wait()
        with db.session() as session:
            session.execute(text("INSERT INTO t (id) VALUES (2)"))
            order.append("second wrote")

    thread = threading.Thread(target=second)
    thread.start()
    with db.session() as session:
        session.execute(text("INSERT INTO t (id) VALUES (1)"))
        wrote.set()
        thread.join(timeout=0.3)  # it cannot write meanwhile: it waits for this turn
        order.append("first commits")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert order == ["first commits", "second wrote"]
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 2
