"""Phases say what they do with a team's second upload of the same selection: allow, warn (the default)
or refuse.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("phases") as batch:  # batch: SQLite cannot add a constraint in place
        batch.add_column(
            sa.Column(
                "duplicates",
                sa.Enum("allow", "warn", "refuse", name="duplicate_policy", native_enum=False, length=16,
                        create_constraint=True),
                nullable=False,
                server_default="warn",
            )
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("phases") as batch:
        batch.drop_column("duplicates")
