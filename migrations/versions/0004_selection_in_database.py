"""An uploaded selection's bytes are stored in the database (`submissions.selection_data`), so that workers
on any host read it without the API's disk; `file_path` stays for submissions stored before, as files.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:  # batch: SQLite cannot alter a column in place
        batch.add_column(sa.Column("selection_data", sa.LargeBinary(), nullable=True))
        batch.alter_column("file_path", existing_type=sa.String(500), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("selection_data")
        batch.alter_column("file_path", existing_type=sa.String(500), nullable=False)
