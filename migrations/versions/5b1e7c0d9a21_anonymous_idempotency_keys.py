"""anonymous idempotency keys: a registration may carry Idempotency-Key

- idempotency_keys.user_id becomes nullable: NULL is a registration's key,
  whose caller has no account yet.
- uq_idempotency_keys_anonymous_key: one row per key among those (the
  (user_id, key) constraint lets NULLs repeat).

Downgrading deletes the anonymous rows (at most 24 hours of retry protection).

Revision ID: 5b1e7c0d9a21
Revises: 324fc09ae94c
Create Date: 2026-11-29 12:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b1e7c0d9a21'
down_revision = '324fc09ae94c'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=True)
        batch_op.create_index(
            'uq_idempotency_keys_anonymous_key',
            ['key'],
            unique=True,
            sqlite_where=sa.text('user_id IS NULL'),
            postgresql_where=sa.text('user_id IS NULL'),
        )


def downgrade():
    op.execute(sa.text('DELETE FROM idempotency_keys WHERE user_id IS NULL'))
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index('uq_idempotency_keys_anonymous_key')
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=False)
