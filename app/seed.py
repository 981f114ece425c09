"""Demo data for ``flask seed``: safe to run again, it only adds what is missing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app.clock import day_start, local_date, utcnow
from app.extensions import db
from app.models import Claim, CommunityReport, Org, OrgMember, Posting, ServiceRecord, User, Volunteer
from app.models.orgs import APPROVED
from app.services import accounts, claims, orgs, postings, records, volunteers
from app.services.permissions import Actor

DEMO_PASSWORD = "demo-pass-2026"

ADMIN = ("+8613800000000", "平台管理员")
ORGS = (
    # name, kind, district, coordinator phone, coordinator name
    ("鼓楼街道志愿服务站", "community", "haishu", "+8613800000001", "王协调"),
    ("鄞州区青年志愿者协会", "ngo", "yinzhou", "+8613800000002", "李协调"),
    ("鼓楼街道第一党支部", "party_branch", "haishu", "+8613800000005", "赵书记"),
)
# phone, display name, real name, ID number, district, skills (codes of app.skills), home
VOLUNTEERS = (
    ("+8613900000001", "小陈", "陈晓", "330203199001011236", "haishu", ["repair", "elderly"], (29.874, 121.546)),
    ("+8613900000002", "阿芳", "周芳", "330212199505050024", "yinzhou", ["elderly", "psychology"], (29.817, 121.558)),
    ("+8613900000003", "小杨", "杨帆", "330205200003030017", "jiangbei", ["tutoring"], (29.897, 121.556)),
)


def _user(phone: str, name: str, admin: bool = False) -> tuple[User, bool]:
    """A demo account, with the current privacy policy accepted (a new version
    after an upgrade is accepted again here: demo data, not a person's choice)."""
    user = db.session.scalar(sa.select(User).where(User.phone == phone))
    created = user is None
    if created:
        user = accounts.create_user(phone, DEMO_PASSWORD, name, is_admin=admin)
    if accounts.consent_required(user):
        accounts.record_consent(user, current_app.config["PRIVACY_VERSION"])
    db.session.commit()
    return user, created


def seed_demo_data() -> Iterator[str]:
    admin, created = _user(*ADMIN, admin=True)
    yield f"{'created' if created else 'kept'} admin {admin.phone} / {DEMO_PASSWORD}"
    for name, kind, district, phone, person in ORGS:
        coordinator, _ = _user(phone, person)
        org = db.session.scalar(sa.select(Org).where(Org.name == name))
        if org is None:
            org = Org(
                name=name, kind=kind, district=district, status=APPROVED, applicant_id=coordinator.id, member_count=1
            )
            db.session.add(org)
            db.session.flush()
            db.session.add(OrgMember(org_id=org.id, user_id=coordinator.id, role="coordinator"))
            db.session.commit()
            yield f"created org {org.id} {name} with coordinator {phone}"
        else:
            yield f"kept org {org.id} {name}"
    for phone, display, real_name, id_number, district, skills, home in VOLUNTEERS:
        user, _ = _user(phone, display)
        if db.session.scalar(sa.select(Volunteer.id).where(Volunteer.user_id == user.id)) is None:
            volunteers.register_volunteer(
                user,
                {
                    "real_name": real_name,
                    "id_number": id_number,
                    "district": district,
                    "skills": skills,
                    "home": {"lat": home[0], "lng": home[1]},
                    "push_radius_km": 5.0,
                },
            )
            yield f"created volunteer {phone}"
        else:
            yield f"kept volunteer {phone}"
    yield from _seed_postings()
    yield from _seed_application()
    yield from _seed_records()
    yield from _seed_withdrawal()
    yield from _seed_party()


# Postings of every kind around 鼓楼 and 鄞州, Ningbo: (author phone, org name or None, body).
# Times are days from now at a local (UTC+8) hour, so the demo never shows stale events.
POSTINGS = (
    (
        "+8613800000001",
        "鼓楼街道志愿服务站",
        {
            "kind": "wish",
            "title": "为独居的张阿婆买一台收音机",
            "description": "张阿婆今年 82 岁，眼睛不好，想听越剧和新闻。",
            "district": "haishu",
            "address": "鼓楼街道公园路社区服务中心",
            "location": {"lat": 29.8735, "lng": 121.5492},
            "tags": ["助老", "陪伴"],
            "beneficiary": {"name": "张阿婆", "phone": "+8613812340001", "address": "公园路 18 号 2 单元 301 室"},
        },
    ),
    (
        "+8613800000001",
        "鼓楼街道志愿服务站",
        {
            "kind": "project",
            "title": "周末社区环境整治",
            "description": "清理楼道杂物、擦洗宣传栏，手套和工具由服务站提供。",
            "district": "haishu",
            "address": "鼓楼街道中山西路 2 号",
            "location": {"lat": 29.8712, "lng": 121.5521},
            "tags": ["环境清洁"],
            "capacity": 20,
            "schedule": (3, 9, 3),
        },
    ),
    (
        "+8613800000001",
        "鼓楼街道志愿服务站",
        {
            "kind": "charity",
            "title": "爱心义剪进社区",
            "description": "为社区老人免费理发，欢迎有理发手艺的志愿者报名。",
            "district": "haishu",
            "address": "鼓楼街道文化家园",
            "location": {"lat": 29.8680, "lng": 121.5560},
            "tags": ["助老", "理发"],
            "schedule": (5, 14, 2),
        },
    ),
    (
        "+8613800000001",
        "鼓楼街道志愿服务站",
        {
            "kind": "energy",
            "title": "爱心超市：大米一袋（5 kg）",
            "description": "用志愿服务积累的能量值兑换，凭兑换码到服务站领取。",
            "district": "haishu",
            "address": "鼓楼街道志愿服务站爱心超市",
            "location": {"lat": 29.8741, "lng": 121.5475},
            "capacity": 30,
            "energy_cost": 100,
        },
    ),
    (
        "+8613800000002",
        "鄞州区青年志愿者协会",
        {
            "kind": "project",
            "title": "小学生课后作业辅导",
            "description": "每周两次，辅导三至六年级学生完成作业。",
            "district": "yinzhou",
            "address": "鄞州区四明中路社区学堂",
            "location": {"lat": 29.8173, "lng": 121.5589},
            "tags": ["学业辅导"],
            "capacity": 8,
            "schedule": (2, 16, 2),
        },
    ),
    (
        "+8613800000002",
        "鄞州区青年志愿者协会",
        {
            "kind": "wish",
            "title": "给留守儿童送一套课外书",
            "description": "小明喜欢科普读物，希望有一套适合四年级的科普丛书。",
            "district": "yinzhou",
            "location": {"lat": 29.8205, "lng": 121.5601},
            "tags": ["学业辅导"],
            "beneficiary": {"name": "李小明"},
        },
    ),
    (
        "+8613900000001",
        None,
        {
            "kind": "service",
            "title": "上门修理小家电",
            "description": "电饭煲、台灯、电风扇等小家电的简单维修，周末可约。",
            "district": "haishu",
            "location": {"lat": 29.8740, "lng": 121.5460},
            "tags": ["维修"],
            "capacity": 5,
        },
    ),
    (
        "+8613900000003",  # a resident's own wish waits for a coordinator's review
        None,
        {
            "kind": "wish",
            "title": "想借一台轮椅给奶奶用两周",
            "description": "奶奶脚踝扭伤，医生建议两周内少走路，家里没有轮椅。",
            "district": "jiangbei",
            "location": {"lat": 29.8905, "lng": 121.5552},
            "tags": ["助老"],
        },
    ),
)


def _seed_postings() -> Iterator[str]:
    """Postings of every kind near 29.87, 121.55, through the posting rules (so
    the coordinators' wishes open and alert nearby volunteers, the resident's waits)."""
    now = utcnow()
    local_midnight = (now + timedelta(hours=8)).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=8)
    present = 0
    for phone, org_name, template in POSTINGS:
        author = db.session.scalar(sa.select(User).where(User.phone == phone))
        exists = db.session.scalar(
            sa.select(Posting.id).where(Posting.author_id == author.id, Posting.title == template["title"])
        )
        if exists is not None:
            present += 1
            continue
        body = {k: v for k, v in template.items() if k != "schedule"}
        if org_name is not None:
            body["org_id"] = db.session.scalar(sa.select(Org.id).where(Org.name == org_name))
        if "schedule" in template:
            days, hour, hours = template["schedule"]
            body["starts_at"] = local_midnight + timedelta(days=days, hours=hour)
            body["ends_at"] = body["starts_at"] + timedelta(hours=hours)
        view = postings.create_posting(Actor(author), body)
        yield f"created {view.kind} {view.id} {view.title} ({view.status})"
    if present:
        yield f"{present} demo postings already there"


# An org application waiting for an admin (the admins' queue: GET /orgs?status=pending).
APPLICATION = ("+8613800000003", "赵申请", "江北区邻里互助会", "ngo", "jiangbei")
# A wish done and confirmed, and honor hours, so 鼓楼's records have something to export.
RECORDED_WISH = {
    "kind": "wish",
    "title": "帮李大爷修理漏水的水龙头",
    "description": "李大爷家厨房水龙头一直滴水，需要换一个阀芯。",
    "district": "haishu",
    "address": "鼓楼街道解放南路社区",
    "location": {"lat": 29.8702, "lng": 121.5501},
    "tags": ["维修"],
    "beneficiary": {"name": "李大爷", "phone": "+8613812340002", "address": "解放南路 66 号 1 单元 502 室"},
}
HONOR = {"minutes": 120, "reason": "社区防汛值守两小时", "activity": "防汛值守"}
# 鼓楼's second coordinator: the second person who approves the honor hours 王协调 gives.
DEPUTY = ("+8613800000004", "孙副站长")


def _seed_application() -> Iterator[str]:
    phone, person, name, kind, district = APPLICATION
    applicant, _ = _user(phone, person)
    if db.session.scalar(sa.select(Org.id).where(Org.name == name)) is not None:
        yield f"org application {name} already there"
        return
    org = orgs.apply_for_org(Actor(applicant), name, kind, district)
    yield f"created org application {org.id} {name} ({org.status}), applicant {phone}"


def _seed_records() -> Iterator[str]:
    """Through the claim rules: 小陈 takes on 鼓楼's wish, marks it done, the
    coordinator confirms it (a credit record) and gives 小陈 honor hours."""
    coordinator = db.session.scalar(sa.select(User).where(User.phone == ORGS[0][3]))
    volunteer = db.session.scalar(sa.select(User).where(User.phone == VOLUNTEERS[0][0]))
    org_id = db.session.scalar(sa.select(Org.id).where(Org.name == ORGS[0][0]))
    wish_id = db.session.scalar(
        sa.select(Posting.id).where(Posting.author_id == coordinator.id, Posting.title == RECORDED_WISH["title"])
    )
    if wish_id is None:
        wish_id = postings.create_posting(Actor(coordinator), {**RECORDED_WISH, "org_id": org_id}).id
        claim = claims.claim_posting(Actor(volunteer), wish_id)
        claims.fulfil_claim(Actor(volunteer), claim.id, "换好了阀芯，试过不再滴水。", minutes=90)
        claims.confirm_claim(Actor(coordinator), claim.id, rating=5, feedback="修得又快又好，李大爷很满意。")
        yield f"created a confirmed wish {wish_id} with its credit record for {VOLUNTEERS[0][0]}"
    else:
        yield f"recorded wish {wish_id} already there"
    deputy, _ = _user(*DEPUTY)
    if db.session.scalar(sa.select(OrgMember.id).where(OrgMember.org_id == org_id, OrgMember.user_id == deputy.id)):
        yield f"second coordinator {DEPUTY[0]} already there"
    else:
        orgs.add_member(Actor(coordinator), org_id, deputy.id, "coordinator")
        yield f"added {DEPUTY[0]} as a second coordinator of {ORGS[0][0]}"
    honored = db.session.scalar(
        sa.select(ServiceRecord.id).where(
            ServiceRecord.org_id == org_id, ServiceRecord.kind == "honor", ServiceRecord.content == HONOR["reason"]
        )
    )
    if honored is None:
        # Three days ago, 08:00-10:00 in Ningbo: its own window, apart from the wish's.
        day = local_date(utcnow()) - timedelta(days=3)
        started_at = day_start(day) + timedelta(hours=8)
        window = {"started_at": started_at, "ended_at": started_at + timedelta(minutes=HONOR["minutes"])}
        record = records.add_honor_record(Actor(coordinator), org_id, {"volunteer_id": volunteer.id, **HONOR, **window})
        yield f"created honor record {record.id} for {VOLUNTEERS[0][0]} ({record.status}: {DEPUTY[0]} approves it)"
    else:
        yield f"honor record {honored} already there"


def _seed_withdrawal() -> Iterator[str]:
    """阿芳 signs up for 鄞州's tutoring project, then withdraws (the coordinator is told)."""
    volunteer = db.session.scalar(sa.select(User).where(User.phone == VOLUNTEERS[1][0]))
    project_id = db.session.scalar(sa.select(Posting.id).where(Posting.title == "小学生课后作业辅导"))
    withdrawn = db.session.scalar(
        sa.select(Claim.id).where(Claim.posting_id == project_id, Claim.user_id == volunteer.id)
    )
    if withdrawn is not None:
        yield f"withdrawn claim {withdrawn} already there"
        return
    claim = claims.claim_posting(Actor(volunteer), project_id)
    claims.withdraw_claim(Actor(volunteer), claim.id)
    yield f"created withdrawn claim {claim.id} on project {project_id}"


def _seed_party() -> Iterator[str]:
    """小陈 is a party member of 鼓楼's first branch and reports to 鼓楼街道志愿服务站
    (双报到), so the branch's report shows his recorded wish; 小杨 may still ask to join."""
    branch = db.session.scalar(sa.select(Org).where(Org.name == ORGS[2][0]))
    community = db.session.scalar(sa.select(Org).where(Org.name == ORGS[0][0]))
    secretary = db.session.scalar(sa.select(User).where(User.phone == ORGS[2][3]))
    member = db.session.scalar(sa.select(User).where(User.phone == VOLUNTEERS[0][0]))
    if db.session.scalar(sa.select(OrgMember.id).where(OrgMember.org_id == branch.id, OrgMember.user_id == member.id)):
        yield f"party member {VOLUNTEERS[0][0]} of {branch.name} already there"
        return
    orgs.add_member(Actor(secretary), branch.id, member.id, "member")
    db.session.add(CommunityReport(user_id=member.id, org_id=community.id))
    db.session.commit()
    yield f"added party member {VOLUNTEERS[0][0]} to {branch.name}, reporting to {community.name}"
