"""revisions: a job's earlier revisions, and units and files per revision

Revision ID: 0007
Revises: 0005_outbox
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("revision_edits", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("revised_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("job_files") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "job_revisions",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("edits", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("units_total", sa.Integer(), nullable=False),
        sa.Column("characters", sa.Integer(), nullable=False),
        sa.Column("audio_seconds", sa.Float(), nullable=True),
        sa.Column("engine", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("files_kept", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "number"),
    )
    # job_units gains the revision in its key: a new table, the rows copied as revision 1
    op.create_table(
        "job_units_by_revision",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("revision", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("rendered_in", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "revision", "index"),
    )
    op.execute('INSERT INTO job_units_by_revision (job_id, revision, "index", key, rendered_in, '
               'created_at) SELECT job_id, 1, "index", key, 1, created_at FROM job_units')
    op.drop_table("job_units")
    op.rename_table("job_units_by_revision", "job_units")


def downgrade() -> None:
    op.create_table(
        "job_units_single",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "index"),
    )
    op.execute('INSERT INTO job_units_single (job_id, "index", key, created_at) '
               'SELECT u.job_id, u."index", u.key, u.created_at FROM job_units u '
               'JOIN jobs j ON j.id = u.job_id AND j.revision = u.revision')
    op.drop_table("job_units")
    op.rename_table("job_units_single", "job_units")
    op.drop_table("job_revisions")
    with op.batch_alter_table("job_files") as batch:
        batch.drop_column("revision")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("revised_at")
        batch.drop_column("revision_edits")
        batch.drop_column("revision")
