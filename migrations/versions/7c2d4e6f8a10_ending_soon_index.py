"""the feed's sort=ending_soon served by an index: (status, when a posting stops taking claims, id)

Revision ID: 7c2d4e6f8a10
Revises: 5b1e7c0d9a21
Create Date: 2026-11-29 13:45:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "7c2d4e6f8a10"
down_revision = "5b1e7c0d9a21"
branch_labels = None
depends_on = None

# The same expression as app.models.postings.ending_at(), in each database's words.
NEVER = {
    "postgresql": "CAST('9999-12-31 00:00:00+00' AS TIMESTAMP WITH TIME ZONE)",
    "sqlite": "'9999-12-31 00:00:00.000000'",
}


def upgrade():
    never = NEVER.get(op.get_bind().dialect.name, NEVER["sqlite"])
    op.create_index(
        "ix_postings_status_ending_at",
        "postings",
        ["status", sa.text(f"coalesce(expires_at, ends_at, {never})"), "id"],
        unique=False,
    )


def downgrade():
    op.drop_index("ix_postings_status_ending_at", table_name="postings")
