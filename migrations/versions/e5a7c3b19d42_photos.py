"""photos: uploads to object storage, checked and re-encoded, attached once; photo_urls emptied

- photos: one row per uploaded photo — its owner, purpose, declared type and
  size, the random stem of its storage keys, its status (pending → ready →
  used, or discarded), the display size's width and height, and what it
  belongs to: a posting, a claim's fulfilment or a user's avatar (one each
  at most). ix_photos_unlinked (partial) holds the rows that belong to
  nothing — unused uploads and photos taken off their owner — for the purge
  job; ix_photos_upload_open those whose original may still come back.
- claims.photos_private: the confirmer's choice for a wish's story (null
  until confirmed).
- postings.photo_urls and claims.photo_urls: links to images hosted
  elsewhere, never checked (a photo taken in a resident's home carries its
  GPS position), with nothing to say their size, kept on hosts we do not
  control and never short-lived: they cannot be the API's photos, and are
  dropped — emptied here, one log line counting them. The columns themselves
  go in the next release: the previous release's code, still running while
  this migration runs, writes them (docs/operations.md, Upgrades).

Downgrading drops the photos table (the files stay in storage); the emptied
links do not come back.

Revision ID: e5a7c3b19d42
Revises: d05777ce2584
Create Date: 2026-12-07 12:30:00.000000

"""
import logging

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5a7c3b19d42'
down_revision = "d05777ce2584"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.migration.photos")

UNLINKED = sa.text('posting_id IS NULL AND claim_id IS NULL AND avatar_user_id IS NULL')
UPLOAD_OPEN = sa.text('NOT upload_closed')
# A JSON list with at least one link ('[]' and null hold none).
HOLDS_LINKS = "photo_urls IS NOT NULL AND CAST(photo_urls AS TEXT) NOT IN ('[]', 'null')"


def upgrade():
    op.create_table('photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=10), nullable=False),
    sa.Column('content_type', sa.String(length=20), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('posting_id', sa.Integer(), nullable=True),
    sa.Column('claim_id', sa.Integer(), nullable=True),
    sa.Column('avatar_user_id', sa.Integer(), nullable=True),
    sa.Column('position', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('upload_closed', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attached_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('size > 0', name=op.f('ck_photos_size_positive')),
    sa.ForeignKeyConstraint(['avatar_user_id'], ['users.id'], name=op.f('fk_photos_avatar_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['claim_id'], ['claims.id'], name=op.f('fk_photos_claim_id_claims'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_photos_owner_id_users')),
    sa.ForeignKeyConstraint(['posting_id'], ['postings.id'], name=op.f('fk_photos_posting_id_postings'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_photos')),
    sa.UniqueConstraint('avatar_user_id', name=op.f('uq_photos_avatar_user_id')),
    sa.UniqueConstraint('key', name=op.f('uq_photos_key'))
    )
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.create_index('ix_photos_claim_id', ['claim_id', 'position'], unique=False)
        batch_op.create_index('ix_photos_owner_id_status', ['owner_id', 'status'], unique=False)
        batch_op.create_index('ix_photos_posting_id', ['posting_id', 'position'], unique=False)
        batch_op.create_index('ix_photos_unlinked', ['created_at'], unique=False, sqlite_where=UNLINKED, postgresql_where=UNLINKED)
        batch_op.create_index('ix_photos_upload_open', ['created_at'], unique=False, sqlite_where=UPLOAD_OPEN, postgresql_where=UPLOAD_OPEN)

    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.add_column(sa.Column('photos_private', sa.Boolean(), nullable=True))

    bind = op.get_bind()
    dropped = {}
    for table in ('postings', 'claims'):
        rows = bind.execute(sa.text(f"SELECT photo_urls FROM {table} WHERE {HOLDS_LINKS}")).scalars().all()
        links = sum(len(_links(value)) for value in rows)
        bind.execute(sa.text(f"UPDATE {table} SET photo_urls = '[]' WHERE {HOLDS_LINKS}"))
        dropped[table] = (len(rows), links)
    if any(count for count, _ in dropped.values()):
        log.info(
            "dropped the photo links of %d postings (%d links) and %d fulfilments (%d links)",
            *dropped['postings'], *dropped['claims'],
        )


def _links(value):
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def downgrade():
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_column('photos_private')

    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.drop_index('ix_photos_upload_open', sqlite_where=UPLOAD_OPEN, postgresql_where=UPLOAD_OPEN)
        batch_op.drop_index('ix_photos_unlinked', sqlite_where=UNLINKED, postgresql_where=UNLINKED)
        batch_op.drop_index('ix_photos_posting_id')
        batch_op.drop_index('ix_photos_owner_id_status')
        batch_op.drop_index('ix_photos_claim_id')

    op.drop_table('photos')
