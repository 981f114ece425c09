"""Print, as shell assignments, the tokens CI's schemathesis run signs in with.

- ``ST_TOKEN``: the runner — the seeded coordinator 13800000001, made a volunteer
  too and with the current privacy policy accepted, so that every operation is
  reachable by one user (and no write answers 428). Its session is never ended
  by the run: the served examples never change a demo account's password or
  phone (tests/test_openapi.py), and the operations that take a refresh token
  get tokens of families of their own:
- ``ST_ROTATE`` (``POST /auth/refresh``) and ``ST_LOGOUT`` (``POST /auth/logout``):
  refresh tokens of the runner, each of its own family, so rotating or ending
  them leaves the runner's family alone;
- ``ST_ADMIN``: the seeded admin, for what only an admin does (orgs'
  applications) and for reviewing postings the runner made (nobody reviews
  their own);
- ``ST_HELPER``: a second user (the seeded volunteer 13900000001) who claims and
  fulfils what the runner posts — nobody claims their own posting — so the
  stateful phase can follow posting → claim → fulfil → confirm.

The runner is also a member of the seeded party branch, so reporting to a
community (``PUT /me/community``, party members only) is tested past its 403.
"""

import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.models import Org, OrgMember, User
from app.models.orgs import PARTY_BRANCH
from app.services import accounts, orgs, tokens, volunteers
from app.services.permissions import Actor


def _user(phone: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.phone == phone))
    if accounts.consent_required(user):
        accounts.record_consent(user, app.config["PRIVACY_VERSION"])
    return user


app = create_app()
with app.app_context():
    runner = _user("+8613800000001")
    if runner.volunteer is None:
        volunteers.register_volunteer(
            runner, {"real_name": "王协调", "id_number": "330203198001011231", "district": "haishu", "skills": []}
        )
    helper = _user("+8613900000001")
    admin = _user("+8613800000000")
    branch = db.session.scalar(sa.select(Org).where(Org.kind == PARTY_BRANCH, Org.is_approved).order_by(Org.id))
    member = sa.select(OrgMember.id).where(OrgMember.org_id == branch.id, OrgMember.user_id == runner.id)
    if db.session.scalar(member) is None:
        orgs.add_member(Actor(admin), branch.id, runner.id, "member")
    values = {
        "ST_TOKEN": tokens.issue_tokens(runner)["access_token"],
        "ST_ROTATE": tokens.issue_tokens(runner)["refresh_token"],
        "ST_LOGOUT": tokens.issue_tokens(runner)["refresh_token"],
        "ST_HELPER": tokens.issue_tokens(helper)["access_token"],
        "ST_ADMIN": tokens.issue_tokens(admin)["access_token"],
    }
    db.session.commit()
    for name, value in values.items():
        print(f"export {name}={value}")
