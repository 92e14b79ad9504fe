"""Submissions remember the Idempotency-Key they were uploaded with, unique per team, so a retried upload
returns the first answer instead of making a second submission.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:  # batch: SQLite cannot add a constraint in place
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_submissions_team_id_idempotency_key"), ["team_id", "idempotency_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(op.f("uq_submissions_team_id_idempotency_key"), type_="unique")
        batch.drop_column("idempotency_key")
