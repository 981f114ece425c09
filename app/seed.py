"""Demo data for ``flask seed``: safe to run again, it only adds what is missing."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from app.extensions import db
from app.models import Org, OrgMember, User, Volunteer
from app.services import accounts, volunteers

DEMO_PASSWORD = "demo-pass-2026"

ADMIN = ("+8613800000000", "平台管理员")
ORGS = (
    # name, kind, district, coordinator phone, coordinator name
    ("鼓楼街道志愿服务站", "community", "haishu", "+8613800000001", "王协调"),
    ("鄞州区青年志愿者协会", "ngo", "yinzhou", "+8613800000002", "李协调"),
)
# phone, display name, real name, ID number, district, skills, home
VOLUNTEERS = (
    ("+8613900000001", "小陈", "陈晓", "330203199001011236", "haishu", ["陪伴", "家电维修"], (29.874, 121.546)),
    ("+8613900000002", "阿芳", "周芳", "330212199505050024", "yinzhou", ["助老", "心理"], (29.817, 121.558)),
    ("+8613900000003", "小杨", "杨帆", "330205200003030017", "jiangbei", ["助学"], (29.897, 121.556)),
)


def _user(phone: str, name: str, admin: bool = False) -> tuple[User, bool]:
    user = db.session.scalar(sa.select(User).where(User.phone == phone))
    if user is not None:
        return user, False
    user = accounts.create_user(phone, DEMO_PASSWORD, name, is_admin=admin)
    db.session.commit()
    return user, True


def seed_demo_data() -> Iterator[str]:
    admin, created = _user(*ADMIN, admin=True)
    yield f"{'created' if created else 'kept'} admin {admin.phone} / {DEMO_PASSWORD}"
    for name, kind, district, phone, person in ORGS:
        coordinator, _ = _user(phone, person)
        org = db.session.scalar(sa.select(Org).where(Org.name == name))
        if org is None:
            org = Org(
                name=name, kind=kind, district=district, status="approved", applicant_id=coordinator.id, member_count=1
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
