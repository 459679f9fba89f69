"""key roles: each API key's role, name, expiry, last use and successor; existing keys are owners

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        # Keys made before roles existed could do everything: they stay able to.
        batch.add_column(sa.Column("role", sa.String(length=20), nullable=False,
                                   server_default="owner"))
        batch.add_column(sa.Column("name", sa.String(length=100), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("replaced_by", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for column in ("replaced_by", "last_used_at", "expires_at", "name", "role"):
            batch.drop_column(column)
