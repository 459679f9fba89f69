"""Alembic environment: the URL comes from the caller (`voicereel migrate` / `serve`)."""

from alembic import context

from voicereel.db.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through voicereel.db.session.migrate()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
