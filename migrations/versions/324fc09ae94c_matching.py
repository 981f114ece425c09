"""matching: one skills vocabulary, "for me", alerts for every kind that needs people, reputation

- volunteer_skills: one row per skill of a volunteer with a copy of their home
  and push radius (the index the skills-first nearby alerts walk).
- volunteers.skills: the free texts of earlier releases become codes of the
  default vocabulary (助老 -> elderly, 家电维修 -> repair, ...); a text that
  names no skill is dropped, with one log line per volunteer naming what was
  dropped. The upgrade never fails on a skill.
- posting_tags.lat / lng / geocell: a copy of the posting's point while it can
  be matched to volunteers (a live wish, project or charity activity), and the
  index (tag, geocell) that finds those postings carrying a tag around a point.
- ix_postings_status_kind_geocell (PostgreSQL) also covers expires_at,
  starts_at and author_id, so "for me" reads candidates from the index alone.
- volunteers.rating_count / rating_total: the reputation, counted from the
  ratings of confirmed work already on the service records (auto-confirmed
  claims carry none).

Downgrading keeps the skills as codes: the free texts are gone.

Revision ID: 324fc09ae94c
Revises: 20fea59b41ec
Create Date: 2026-11-29 10:09:09.919456

"""
import logging

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '324fc09ae94c'
down_revision = '20fea59b41ec'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.migration.skills")

# The default vocabulary as it stood at this revision (app/skills.py may change
# later; this migration must not): every code, its names, and the free texts
# volunteers wrote for it before skills were codes.
SKILL_TEXTS = {
    "elderly": ("助老", "elderly care", "敬老", "养老", "为老服务", "关爱老人", "老人"),
    "children": ("关爱儿童", "caring for children", "儿童", "留守儿童", "助幼", "关爱青少年"),
    "disability": ("助残", "disability support", "扶残", "残疾人"),
    "medical": ("医疗健康", "medical and health", "医疗", "医护", "义诊", "健康", "护理"),
    "repair": ("维修", "repairs", "家电维修", "水电维修", "修理"),
    "tutoring": ("学业辅导", "tutoring", "助学", "辅导", "家教", "支教", "课业辅导"),
    "legal": ("法律咨询", "legal advice", "法律", "法律援助", "普法"),
    "psychology": ("心理疏导", "counselling", "心理", "心理咨询", "心理辅导"),
    "cleaning": ("环境清洁", "clean-ups", "环保", "清洁", "保洁", "垃圾分类", "环境整治"),
    "digital": ("手机电脑", "phones and computers", "电脑", "手机", "智能手机", "数码"),
    "haircut": ("理发", "haircuts", "义剪", "剪发"),
    "driving": ("驾驶", "driving", "开车", "司机"),
    "first_aid": ("急救", "first aid", "应急救护"),
    "translation": ("翻译", "translation", "外语"),
    "events": ("活动组织", "organising events", "活动策划", "组织活动"),
}
CODE_OF_TEXT = {text: code for code, texts in SKILL_TEXTS.items() for text in (code, *texts)}
BATCH = 1000

volunteers = sa.table(
    "volunteers",
    sa.column("id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("volunteer_no", sa.String),
    sa.column("skills", sa.JSON),
    sa.column("home_lat", sa.Float),
    sa.column("home_lng", sa.Float),
    sa.column("push_radius_km", sa.Float),
)
volunteer_skills = sa.table(
    "volunteer_skills",
    sa.column("user_id", sa.Integer),
    sa.column("skill", sa.String),
    sa.column("home_lat", sa.Float),
    sa.column("home_lng", sa.Float),
    sa.column("push_radius_km", sa.Float),
)


def skill_codes(texts) -> tuple[list[str], list[str]]:
    """(codes, dropped texts) of one volunteer's old skills list."""
    codes, dropped = [], []
    for text in texts if isinstance(texts, list) else []:
        code = CODE_OF_TEXT.get(text.strip().lower()) if isinstance(text, str) else None
        if code is None:
            dropped.append(text)
        elif code not in codes:
            codes.append(code)
    return codes, dropped


def convert_skills() -> None:
    """Free-text skills -> codes, and the volunteer_skills index rows, in batches."""
    conn = op.get_bind()
    last_id = 0
    while True:
        rows = conn.execute(
            sa.select(volunteers).where(volunteers.c.id > last_id).order_by(volunteers.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        index_rows = []
        for row in rows:
            codes, dropped = skill_codes(row.skills)
            if dropped:
                log.info("volunteer %s (%s): dropped skills %s", row.id, row.volunteer_no, ", ".join(map(str, dropped)))
            if codes != row.skills:
                conn.execute(sa.update(volunteers).where(volunteers.c.id == row.id).values(skills=codes))
            index_rows += [
                {
                    "user_id": row.user_id,
                    "skill": code,
                    "home_lat": row.home_lat,
                    "home_lng": row.home_lng,
                    "push_radius_km": row.push_radius_km,
                }
                for code in codes
            ]
        if index_rows:
            conn.execute(sa.insert(volunteer_skills), index_rows)
        last_id = rows[-1].id


def upgrade():
    op.create_table('volunteer_skills',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('skill', sa.String(length=20), nullable=False),
    sa.Column('home_lat', sa.Float(), nullable=True),
    sa.Column('home_lng', sa.Float(), nullable=True),
    sa.Column('push_radius_km', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['volunteers.user_id'], name=op.f('fk_volunteer_skills_user_id_volunteers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'skill', name=op.f('pk_volunteer_skills'))
    )
    convert_skills()
    with op.batch_alter_table('volunteer_skills', schema=None) as batch_op:
        batch_op.create_index('ix_volunteer_skills_skill_home', ['skill', 'home_lat', 'home_lng'], unique=False, postgresql_include=['push_radius_km', 'user_id'])

    with op.batch_alter_table('posting_tags', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lat', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('lng', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('geocell', sa.Integer(), nullable=True))
    op.execute(
        "UPDATE posting_tags SET"
        " lat = (SELECT p.lat FROM postings p WHERE p.id = posting_tags.posting_id),"
        " lng = (SELECT p.lng FROM postings p WHERE p.id = posting_tags.posting_id),"
        " geocell = (SELECT p.geocell FROM postings p WHERE p.id = posting_tags.posting_id)"
        " WHERE posting_id IN (SELECT id FROM postings WHERE kind IN ('wish', 'project', 'charity')"
        " AND status IN ('pending_review', 'open', 'claimed', 'full'))"
    )
    with op.batch_alter_table('posting_tags', schema=None) as batch_op:
        batch_op.create_index('ix_posting_tags_tag_geocell', ['tag', 'geocell'], unique=False, postgresql_include=['lat', 'lng', 'posting_id'], postgresql_where=sa.text('geocell IS NOT NULL'), sqlite_where=sa.text('geocell IS NOT NULL'))

    if op.get_bind().dialect.name == 'postgresql':
        # INCLUDE columns exist on PostgreSQL only; SQLite's index is unchanged.
        op.drop_index('ix_postings_status_kind_geocell', table_name='postings')
        op.create_index('ix_postings_status_kind_geocell', 'postings', ['status', 'kind', 'geocell'], unique=False, postgresql_include=['lat', 'lng', 'created_at', 'id', 'expires_at', 'starts_at', 'author_id'])

    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rating_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('rating_total', sa.Integer(), server_default='0', nullable=False))
    rated = (
        " FROM service_records r LEFT JOIN claims c ON c.id = r.claim_id"
        " WHERE r.volunteer_id = volunteers.user_id AND r.kind = 'credit' AND r.rating IS NOT NULL"
        " AND (c.auto_confirmed IS NULL OR c.auto_confirmed = false)"
    )
    op.execute(
        f"UPDATE volunteers SET rating_count = (SELECT count(*){rated}),"
        f" rating_total = (SELECT coalesce(sum(r.rating), 0){rated})"
    )


def downgrade():
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_column('rating_total')
        batch_op.drop_column('rating_count')

    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_postings_status_kind_geocell', table_name='postings')
        op.create_index('ix_postings_status_kind_geocell', 'postings', ['status', 'kind', 'geocell'], unique=False, postgresql_include=['lat', 'lng', 'created_at', 'id'])

    with op.batch_alter_table('posting_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_posting_tags_tag_geocell', postgresql_include=['lat', 'lng', 'posting_id'], postgresql_where=sa.text('geocell IS NOT NULL'), sqlite_where=sa.text('geocell IS NOT NULL'))
        batch_op.drop_column('geocell')
        batch_op.drop_column('lng')
        batch_op.drop_column('lat')

    with op.batch_alter_table('volunteer_skills', schema=None) as batch_op:
        batch_op.drop_index('ix_volunteer_skills_skill_home', postgresql_include=['push_radius_km', 'user_id'])

    op.drop_table('volunteer_skills')
