"""records are an organisation's record: pending → recorded | rejected, an org on every record,
windows on every record, places by name, ratings once per rater

What it does to the data already there (written under the old rules, where a
record counted as soon as it was written):

- every record becomes ``recorded`` (it was counted), decided when it was
  written, approved by nobody (nobody was asked);
- a record without an org gets its posting's org, or for an org-less wish the
  org of the coordinator who approved the wish (the lowest id of the orgs they
  coordinate in the wish's district, an approved one); org-less wishes get
  that org as their ``recording_org_id`` too. A record for which no org can be
  found (a service posted without an org, a posting since deleted) keeps no
  org and stays ``recorded``: the volunteer keeps the hours the old rules
  counted, but no org lists, exports or certifies it;
- every record gets its window: an end of ``started_at`` + minutes, else its
  creation; a start of the end − minutes;
- a place holding a district's code (``haishu``) holds its name (海曙区);
- ratings become one per rater: the latest rating each confirmer gave each
  volunteer (ratings whose rater is unknown — an account since gone — count
  each on its own; an auto-confirmed claim's record carries none);
- each volunteer's credit and honor minutes and rating sum and count are
  recomputed from the recorded records and the ratings. Energy already
  minted stays (the ledger is append-only).

Revision ID: 9d41e7b2c3a5
Revises: e5a7c3b19d42
Create Date: 2026-12-07 12:30:00.000000

"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "9d41e7b2c3a5"
down_revision = "e5a7c3b19d42"
branch_labels = None
depends_on = None

# Ningbo's districts as the code named them when this migration was written.
DISTRICT_NAMES = {
    "haishu": "海曙区",
    "jiangbei": "江北区",
    "beilun": "北仑区",
    "zhenhai": "镇海区",
    "yinzhou": "鄞州区",
    "fenghua": "奉化区",
    "yuyao": "余姚市",
    "cixi": "慈溪市",
    "ninghai": "宁海县",
    "xiangshan": "象山县",
}


def _utc(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _bind_time(value, dialect: str):
    return value.replace(tzinfo=None) if dialect == "sqlite" else value


def upgrade():
    conn = op.get_bind()
    dialect = conn.dialect.name
    op.create_table(
        "volunteer_ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=True),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_volunteer_ratings_rating_in_range")),
        sa.ForeignKeyConstraint(
            ["claim_id"], ["claims.id"], name=op.f("fk_volunteer_ratings_claim_id_claims"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["users.id"], name=op.f("fk_volunteer_ratings_rater_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"], ["users.id"], name=op.f("fk_volunteer_ratings_volunteer_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volunteer_ratings")),
        sa.UniqueConstraint("volunteer_id", "rater_id", name="uq_volunteer_ratings_volunteer_rater"),
    )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recording_org_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_postings_recording_org_id_orgs"), "orgs", ["recording_org_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("service_records", schema=None) as batch_op:
        # Every record already there was counted: it is recorded.
        batch_op.add_column(sa.Column("status", sa.String(length=8), nullable=False, server_default="recorded"))
        batch_op.add_column(sa.Column("approved_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reject_reason", sa.String(length=500), nullable=True))

    # The recording org of org-less wishes: the approving coordinator's org in the district.
    conn.execute(
        sa.text(
            """
            UPDATE postings SET recording_org_id = (
                SELECT MIN(o.id) FROM org_members m JOIN orgs o ON o.id = m.org_id
                WHERE m.user_id = postings.reviewed_by AND m.role = 'coordinator'
                  AND o.status = 'approved' AND o.district = postings.district)
            WHERE org_id IS NULL AND kind = 'wish' AND reviewed_by IS NOT NULL
            """
        )
    )
    # Each record's org where one can be found.
    conn.execute(
        sa.text(
            """
            UPDATE service_records SET org_id = (
                SELECT COALESCE(p.org_id, p.recording_org_id) FROM postings p WHERE p.id = service_records.posting_id)
            WHERE org_id IS NULL AND posting_id IS NOT NULL
            """
        )
    )
    conn.execute(sa.text("UPDATE service_records SET decided_at = created_at"))
    # Every record gets its window.
    rows = conn.execute(
        sa.text(
            "SELECT id, minutes, started_at, ended_at, created_at FROM service_records "
            "WHERE started_at IS NULL OR ended_at IS NULL"
        )
    ).all()
    for record_id, minutes, started_at, ended_at, created_at in rows:
        started_at, ended_at, created_at = _utc(started_at), _utc(ended_at), _utc(created_at)
        span = timedelta(minutes=minutes or 0)
        if ended_at is None:
            ended_at = started_at + span if started_at is not None else created_at
        if started_at is None:
            started_at = ended_at - span
        conn.execute(
            sa.text("UPDATE service_records SET started_at = :s, ended_at = :e WHERE id = :id"),
            {"s": _bind_time(started_at, dialect), "e": _bind_time(ended_at, dialect), "id": record_id},
        )
    # Places by name, not code.
    for code, name in DISTRICT_NAMES.items():
        conn.execute(sa.text("UPDATE service_records SET place = :name WHERE place = :code"), {"name": name, "code": code})

    # Ratings once per rater: the latest of each (volunteer, rater).
    latest: dict = {}
    anonymous = []
    for volunteer_id, rater_id, rating, claim_id, created_at in conn.execute(
        sa.text(
            # an auto-confirmed claim's record carries no rating of a person
            "SELECT r.volunteer_id, r.recorded_by, r.rating, r.claim_id, r.created_at FROM service_records r "
            "LEFT JOIN claims c ON c.id = r.claim_id "
            "WHERE r.rating BETWEEN 1 AND 5 AND (c.id IS NULL OR NOT c.auto_confirmed) ORDER BY r.created_at, r.id"
        )
    ):
        row = {
            "volunteer_id": volunteer_id,
            "rater_id": rater_id,
            "rating": rating,
            "claim_id": claim_id,
            "rated_at": created_at,
        }
        if rater_id is None:
            anonymous.append(row)
        elif rater_id != volunteer_id:
            latest[volunteer_id, rater_id] = row
    ratings = [*latest.values(), *anonymous]
    if ratings:
        conn.execute(
            sa.text(
                "INSERT INTO volunteer_ratings (volunteer_id, rater_id, rating, claim_id, rated_at) "
                "VALUES (:volunteer_id, :rater_id, :rating, :claim_id, :rated_at)"
            ),
            ratings,
        )
    # The counters, from the recorded records and the ratings.
    conn.execute(
        sa.text(
            """
            UPDATE volunteers SET
              credit_minutes = COALESCE((SELECT SUM(r.minutes) FROM service_records r
                  WHERE r.volunteer_id = volunteers.user_id AND r.kind = 'credit' AND r.status = 'recorded'), 0),
              honor_minutes = COALESCE((SELECT SUM(r.minutes) FROM service_records r
                  WHERE r.volunteer_id = volunteers.user_id AND r.kind = 'honor' AND r.status = 'recorded'), 0),
              rating_count = (SELECT COUNT(*) FROM volunteer_ratings v WHERE v.volunteer_id = volunteers.user_id),
              rating_total = COALESCE((SELECT SUM(v.rating) FROM volunteer_ratings v
                  WHERE v.volunteer_id = volunteers.user_id), 0)
            """
        )
    )

    with op.batch_alter_table("service_records", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=sa.String(length=8), server_default=None)
        batch_op.alter_column("started_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column("ended_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_check_constraint("status_known", "status IN ('pending', 'recorded', 'rejected')")
        batch_op.create_check_constraint("window_in_order", "started_at <= ended_at")
        batch_op.drop_index(batch_op.f("ix_service_records_org_id_id"))
        batch_op.create_index(
            "ix_service_records_org_id_status_created_at", ["org_id", "status", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_service_records_volunteer_id_ended_at", ["volunteer_id", "ended_at"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_service_records_approved_by_users"), "users", ["approved_by"], ["id"], ondelete="SET NULL"
        )


def downgrade():
    # Pending and rejected records did not count under the old rules' reading of a
    # record either: they go, and the counters are what the recorded ones add up to.
    op.execute("DELETE FROM service_records WHERE status <> 'recorded'")
    with op.batch_alter_table("service_records", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_service_records_approved_by_users"), type_="foreignkey")
        batch_op.drop_index("ix_service_records_volunteer_id_ended_at")
        batch_op.drop_index("ix_service_records_org_id_status_created_at")
        batch_op.create_index(batch_op.f("ix_service_records_org_id_id"), ["org_id", "id"], unique=False)
        batch_op.drop_constraint("window_in_order", type_="check")
        batch_op.drop_constraint("status_known", type_="check")
        batch_op.alter_column("ended_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch_op.alter_column("started_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch_op.drop_column("reject_reason")
        batch_op.drop_column("decided_at")
        batch_op.drop_column("approved_by")
        batch_op.drop_column("status")
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_postings_recording_org_id_orgs"), type_="foreignkey")
        batch_op.drop_column("recording_org_id")
    op.drop_table("volunteer_ratings")
