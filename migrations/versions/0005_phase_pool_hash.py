"""A phase records its pool's content hash (`phases.pool_hash`), so that a worker host checks its own copy
of the pool against it before it runs a stage; NULL for phases created before (not checked).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("phases") as batch:
        batch.add_column(sa.Column("pool_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("phases") as batch:
        batch.drop_column("pool_hash")
