"""Who may do what: one actor per request, with named predicates.

Every service asks the actor, never its own copy of a rule. The rules:

- An org's coordinators (members with role ``coordinator`` of an *approved*
  org) and admins **manage the org**.
- An approved org is public; a pending or rejected one (an application) is
  seen by admins and the org's own members only.
- A posting's **coordinators** are admins and the coordinators of its org; a
  posting without an org whose kind is district-managed (a resident's wish)
  is coordinated by the coordinators of any approved org of its district.
- A posting's **managers** are its author and its coordinators: they edit
  and cancel it, see its claims, hand over rewards, mark no-shows.
- A posting's **reviewers** are its coordinators other than its author:
  nobody approves their own posting.
- A posting's **contacts** (who see the beneficiary's phone and exact
  address) are its managers and the holder of an active or fulfilled claim.
- A certificate is seen by its volunteer and managed (voided) by the
  managers of the org that certifies it, never by its own volunteer.
- **Who posts**: a kind's ``posted_by`` says who (``app.policy``); a
  posting for an org is made by its coordinators (admins too), except that a
  resident may name an org on their own wish (that org then reviews it) and a
  volunteer may offer a service for an approved org they are a member of.
- **Who claims**: anyone but the posting's author; a registered volunteer
  where the kind asks for one.
- **Nobody confirms their own work**: the person whose hours a claim earns
  (the claimant, or a service's provider) never confirms it, nor does a
  claimant confirm the hand-over of their own reward; nobody gives
  themself honor hours.
- **Official hours are an organisation's record** (谁组织谁记录): a record
  is recorded at once only when a coordinator of its org (or an admin) stands
  behind it; otherwise a second person approves it — a coordinator of that org
  (or an admin) who is neither the volunteer (``own_record``) nor whoever
  made the record (``second_person_required``). The same people, except the
  volunteer, may reject it.
- **Joining an org**: a registered volunteer asks; the org's coordinators
  decide. A member of an approved ``party_branch`` is a party member; they
  report to one community, and their ``party`` block is seen by them and by
  the coordinators of their branch and of that community, nobody else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import sqlalchemy as sa
from flask_babel import gettext

from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import Certificate, Claim, Org, OrgMember, Posting, ServiceRecord, User
from app.models.orgs import COMMUNITY, PARTY_BRANCH
from app.policy import (
    ANYONE,
    CONTACT_CLAIM_STATUSES,
    COORDINATORS,
    FULFIL_CONFIRM,
    HAND_OVER,
    HIDDEN_POSTING_STATUSES,
    POLICIES,
    PROVIDER,
    PROVIDERS,
    KindPolicy,
    kind_name,
    kinds_where,
)

DISTRICT_MANAGED_KINDS = kinds_where(district_managed=True)


def _coordinators_of_approved_orgs(*columns: sa.ColumnElement) -> sa.Select:
    """(user id, org id, district) — or ``columns`` of them — of every coordinator
    of an approved org: the one definition of "coordinates", read both ways (an
    actor's orgs, a posting's reviewers)."""
    return (
        sa.select(*(columns or (OrgMember.user_id, Org.id, Org.district)))
        .select_from(OrgMember)
        .join(Org, Org.id == OrgMember.org_id)
        .where(OrgMember.role == "coordinator", Org.is_approved)
    )


def coordinated_orgs_sql(postgresql: bool) -> sa.ScalarSelect:
    """What :attr:`Actor.coordinated` reads, as one JSON column of a statement
    that selects the user (the token's check: ``tokens.user_and_revocation``),
    correlated to its ``users`` row: ``[[org id, district], …]``, ``[]`` for none."""
    if postgresql:
        pairs = sa.func.coalesce(
            sa.func.json_agg(sa.func.json_build_array(Org.id, Org.district)), sa.literal_column("'[]'::json")
        )
    else:
        pairs = sa.func.json_group_array(sa.func.json_array(Org.id, Org.district))
    mine = _coordinators_of_approved_orgs(sa.type_coerce(pairs, sa.JSON))
    return mine.where(OrgMember.user_id == User.id).scalar_subquery()


class Actor:
    """The user behind a request (or nobody), and what they coordinate.

    Built once per request (``app.security.current_actor``); the orgs are read
    on first use, in one query, and kept for the rest of the request.
    """

    def __init__(self, user: User | None) -> None:
        self.user = user
        self.id: int | None = user.id if user is not None else None
        self.is_admin = bool(user is not None and user.is_admin)

    def __repr__(self) -> str:
        return f"<Actor {self.id}{' admin' if self.is_admin else ''}>"

    @property
    def signed_in(self) -> bool:
        return self.user is not None

    @property
    def is_volunteer(self) -> bool:
        return self.user is not None and self.user.volunteer is not None

    @cached_property
    def coordinated(self) -> dict[int, str]:
        """The approved orgs this user coordinates: id -> district (read with the
        user by the token's check when it was, else here)."""
        if self.id is None:
            return {}
        read = self.user.coordinated_orgs
        if read is not None:
            return {org_id: district for org_id, district in read}
        mine = _coordinators_of_approved_orgs().where(OrgMember.user_id == self.id).subquery()
        rows = db.session.execute(sa.select(mine.c.id, mine.c.district))
        return dict(rows.tuples().all())

    @cached_property
    def member_roles(self) -> dict[int, str]:
        """Every org this user belongs to, whatever its status: id -> role."""
        if self.id is None:
            return {}
        rows = db.session.execute(sa.select(OrgMember.org_id, OrgMember.role).where(OrgMember.user_id == self.id))
        return dict(rows.tuples().all())

    @property
    def districts(self) -> frozenset[str]:
        """The districts of the orgs this user coordinates."""
        return frozenset(self.coordinated.values())

    @property
    def is_coordinator(self) -> bool:
        return bool(self.coordinated)

    def roles(self) -> list[str]:
        """``user``, and ``volunteer``, ``coordinator``, ``admin`` where they apply."""
        roles = ["user"]
        if self.is_volunteer:
            roles.append("volunteer")
        if self.is_coordinator:
            roles.append("coordinator")
        if self.is_admin:
            roles.append("admin")
        return roles

    # --- orgs ------------------------------------------------------------------------------------------------

    def coordinated_org_in(self, district: str) -> int | None:
        """The org this user coordinates in ``district`` (the lowest id of several; None: none)."""
        return min((org_id for org_id, d in self.coordinated.items() if d == district), default=None)

    def coordinates_org(self, org_id: int | None) -> bool:
        return org_id is not None and org_id in self.coordinated

    def manages_org(self, org_id: int | None) -> bool:
        return self.is_admin or self.coordinates_org(org_id)

    def may_view_org(self, org: Org) -> bool:
        """Approved orgs: everyone. An application (pending, rejected): admins and its members."""
        return org.is_approved or self.is_admin or org.id in self.member_roles

    def visible_orgs(self) -> sa.ColumnElement[bool]:
        """:meth:`may_view_org` as SQL, for lists."""
        if self.is_admin:
            return sa.true()
        approved = Org.is_approved
        if not self.member_roles:
            return approved
        return sa.or_(approved, Org.id.in_(sorted(self.member_roles)))

    # --- joining orgs, party members (党员志愿者, 双报到) ----------------------------------------------------------

    def require_may_join(self, org: Org) -> None:
        """A registered volunteer (``volunteer_required``) asks to join an approved org
        (``org_not_approved``) they are not a member of (``already_member``); its
        coordinators then decide."""
        if not self.is_volunteer:
            raise Forbidden("volunteer_required")
        if not org.is_approved:
            raise Conflict("org_not_approved")
        if org.id in self.member_roles:
            raise Conflict("already_member")

    def require_may_decide_join(self, org: Org) -> None:
        """The org's coordinators (``coordinator_required``) list, approve and refuse the
        requests to join it; a requester is never a member, so never decides their own."""
        if not self.coordinates_org(org.id):
            raise Forbidden("coordinator_required")

    def require_party_member(self) -> None:
        """A member of an approved ``party_branch`` (``party_member_required``) reports to
        a community."""
        if not self.party_branches:
            raise Forbidden("party_member_required")

    @cached_property
    def party_branches(self) -> list[int]:
        """The approved party branches this user belongs to, lowest id first."""
        if self.id is None:
            return []
        return list(db.session.scalars(party_branch_ids(self.id)))

    def sees_party(self, user_id: int, branch_id: int | None, community_id: int | None) -> bool:
        """The party member themself, the coordinators of their branch and of the
        community they report to; nobody else (admins neither)."""
        if self.id is None or branch_id is None:
            return False
        return user_id == self.id or self.coordinates_org(branch_id) or self.coordinates_org(community_id)

    def require_may_list_party_members(self, org: Org) -> None:
        """The coordinators of a community (its reporting party members) or of a party
        branch (its members) (``coordinator_required``); no other kind of org has a list."""
        if org.kind not in (PARTY_BRANCH, COMMUNITY):
            raise NotFound()
        if not self.coordinates_org(org.id):
            raise Forbidden("coordinator_required")

    def require_may_export_party_report(self, org: Org) -> None:
        """The coordinators of a party branch (``coordinator_required``): the report of its
        members' service wherever it happened."""
        if org.kind != PARTY_BRANCH:
            raise NotFound()
        if not self.coordinates_org(org.id):
            raise Forbidden("coordinator_required")

    # --- posting and claiming -------------------------------------------------------------------------------

    def posts_for_org(self, org: Org | None) -> bool:
        """Posting in the name of ``org``: its coordinators and admins."""
        return org is not None and self.manages_org(org.id)

    def require_may_post(self, policy: KindPolicy, org: Org | None, *, for_someone_else: bool) -> None:
        """Anyone signed in posts a wish for themself (naming an org sends it to that
        org's review); a wish for someone else, a project, a charity activity or a
        reward only a coordinator of ``org_id`` (or an admin); a service a registered
        volunteer, for an approved org only as its member (``org_member_required``).

        403 unless this actor may post a ``policy.kind`` (for ``org``, an approved
        org, when given; ``for_someone_else``: with a beneficiary who is not the poster):

        - anyone signed in posts a wish for themself, and may name an org on it
          (that org's coordinators then review it); only a coordinator (of the
          org named) or an admin posts one for someone else;
        - a service is offered by a registered volunteer (for an approved org
          only if they are its member: ``org_member_required``) or by an org's
          coordinators;
        - the other kinds are posted for an org by its coordinators.
        """
        member = org is not None and org.id in self.member_roles
        if org is not None and not self.posts_for_org(org):
            if policy.posted_by == PROVIDERS:
                if not member:
                    raise Forbidden("org_member_required")
                if not self.is_volunteer:
                    raise Forbidden("volunteer_required")
            elif policy.posted_by != ANYONE:
                raise Forbidden("coordinator_required")
        if policy.posted_by == COORDINATORS and org is None:
            if self.is_admin or self.is_coordinator:
                raise Invalid(
                    "org_id", gettext("Name the organisation this %(kind)s is posted for.", kind=kind_name(policy.kind))
                )
            raise Forbidden("coordinator_required")
        if policy.posted_by == PROVIDERS and org is None:
            if not (self.is_volunteer or self.is_admin or self.is_coordinator):
                raise Forbidden("volunteer_required")
        if for_someone_else and not (self.posts_for_org(org) or self.is_admin):
            raise Forbidden("coordinator_required")

    def require_may_claim(self, policy: KindPolicy, author_id: int) -> None:
        """Anyone but the posting's author (``own_posting``); a registered volunteer where
        the kind's claimant must be one (``volunteer_required``)."""
        if author_id == self.id:
            raise Forbidden("own_posting")
        if policy.claimant_is_volunteer and not self.is_volunteer:
            raise Forbidden("volunteer_required")

    @staticmethod
    def may_claim_sql(
        claimant_is_volunteer: sa.ColumnElement[bool], author_id: sa.ColumnElement[int]
    ) -> sa.ColumnElement[bool]:
        """:meth:`require_may_claim` as SQL, for the claim's one statement on PostgreSQL
        (the claimant as the parameters ``user_id`` and ``is_volunteer``); when it is
        false, :meth:`require_may_claim` says why."""
        return sa.and_(
            author_id != sa.bindparam("user_id"),
            sa.or_(sa.not_(claimant_is_volunteer), sa.bindparam("is_volunteer", type_=sa.Boolean)),
        )

    # --- postings --------------------------------------------------------------------------------------------

    def coordinates_posting(self, posting: Posting) -> bool:
        """An admin, a coordinator of its org, or (org-less wish) of its district."""
        if self.is_admin:
            return True
        if posting.org_id is not None:
            return self.coordinates_org(posting.org_id)
        return posting.kind in DISTRICT_MANAGED_KINDS and posting.district in self.districts

    def is_author(self, posting: Posting) -> bool:
        return self.id is not None and posting.author_id == self.id

    def manages_posting(self, posting: Posting) -> bool:
        """Its author and its coordinators (its org's, or for an org-less wish its
        district's; admins): they edit and cancel it, see its claims, hand rewards over."""
        return self.is_author(posting) or self.coordinates_posting(posting)

    def reviews_posting(self, posting: Posting) -> bool:
        """Its coordinators other than its author: nobody approves their own posting."""
        return self.coordinates_posting(posting) and not self.is_author(posting)

    def is_contact(self, posting: Posting, claim_status: str | None) -> bool:
        """The beneficiary's phone and exact address (and the exact point) are for the
        posting's managers and the holder of an active or fulfilled claim."""
        return self.manages_posting(posting) or claim_status in CONTACT_CLAIM_STATUSES

    def sees_exact_point(self, posting: Posting, claim_status: str | None) -> bool:
        """The exact point of a posting with a beneficiary (a wish: someone's home)
        is for its contacts; others get it rounded (``app.geo.approximate``)."""
        return not POLICIES[posting.kind].has_beneficiary or self.is_contact(posting, claim_status)

    def may_view_posting(self, posting: Posting, held_claim: Callable[[], bool]) -> bool:
        """Public postings: everyone. Hidden ones (pending, rejected, cancelled): its
        managers; a cancelled one also whoever held a claim on it (``held_claim``,
        asked only then)."""
        if posting.status not in HIDDEN_POSTING_STATUSES:
            return True
        if self.manages_posting(posting):
            return True
        return posting.status == "cancelled" and self.signed_in and held_claim()

    def visible_postings(self) -> sa.ColumnElement[bool]:
        """:meth:`may_view_posting` as SQL, for lists."""
        public = Posting.status.not_in(HIDDEN_POSTING_STATUSES)
        if self.id is None:
            return public
        if self.is_admin:
            return sa.true()
        held = sa.exists().where(Claim.posting_id == Posting.id, Claim.user_id == self.id)
        return sa.or_(
            public,
            self._coordinated_postings(),
            Posting.author_id == self.id,
            sa.and_(Posting.status == "cancelled", held),
        )

    def reviewable_postings(self) -> sa.ColumnElement[bool]:
        """:meth:`reviews_posting` as SQL: the review queue's filter."""
        if self.id is None:
            return sa.false()
        return sa.and_(self._coordinated_postings(), Posting.author_id != self.id)

    def _coordinated_postings(self) -> sa.ColumnElement[bool]:
        """:meth:`coordinates_posting` as SQL."""
        if self.is_admin:
            return sa.true()
        clauses = []
        if self.coordinated:
            clauses.append(Posting.org_id.in_(sorted(self.coordinated)))
            clauses.append(
                sa.and_(
                    Posting.org_id.is_(None),
                    Posting.kind.in_(DISTRICT_MANAGED_KINDS),
                    Posting.district.in_(sorted(self.districts)),
                )
            )
        return sa.or_(*clauses) if clauses else sa.false()

    # --- claims ----------------------------------------------------------------------------------------------

    def may_see_claim(self, claim: Claim, posting: Posting) -> bool:
        return claim.user_id == self.id or self.manages_posting(posting)

    def credited_user_id(self, claim: Claim, posting: Posting) -> int | None:
        """Whose hours this claim earns (None: none)."""
        credited = POLICIES[posting.kind].credited
        if credited is None:
            return None
        return posting.author_id if credited == PROVIDER else claim.user_id

    def may_fulfil(self, claim: Claim, posting: Posting) -> bool:
        """The one who did the work: a wish's claimant, a service's provider."""
        policy = POLICIES[posting.kind]
        return policy.finish == FULFIL_CONFIRM and self.id == self.credited_user_id(claim, posting)

    def require_may_confirm(self, claim: Claim, posting: Posting) -> None:
        """Never the one whose work (or reward) it is (``own_claim``); a wish and a
        reward: its managers; a service: the resident who booked it or its
        coordinators (``poster_required`` for anyone else).

        - wish: its managers (poster, coordinators);
        - service: the resident who booked it, or its coordinators;
        - energy (hand-over): its managers.
        """
        policy = POLICIES[posting.kind]
        credited = self.credited_user_id(claim, posting)
        if self.id is not None and (self.id == credited or (policy.finish == HAND_OVER and self.id == claim.user_id)):
            raise Forbidden("own_claim")
        if policy.credited == PROVIDER:
            allowed = claim.user_id == self.id or self.coordinates_posting(posting)
        else:
            allowed = self.manages_posting(posting)
        if not allowed:
            raise Forbidden("poster_required")

    def require_may_award(self, org_id: int, volunteer_id: int) -> None:
        """The org's coordinators and admins (``coordinator_required``), never to
        themself (``own_record``); the award then waits for a second person."""
        if not self.manages_org(org_id):
            raise Forbidden("coordinator_required")
        if volunteer_id == self.id:
            raise Forbidden("own_record")

    # --- service records ---------------------------------------------------------------------------------------

    def stands_behind(self, org_id: int | None) -> bool:
        """A coordinator of the recording org, or an admin: a record their confirmation
        makes is recorded at once (anyone else's waits for approval)."""
        return org_id is not None and self.manages_org(org_id)

    def may_see_record(self, record: ServiceRecord) -> bool:
        """Its volunteer, the recording org's coordinators, admins."""
        return record.volunteer_id == self.id or self.manages_org(record.org_id)

    def require_may_approve(self, record: ServiceRecord) -> None:
        """A coordinator of its org or an admin (``coordinator_required``), never its
        volunteer (``own_record``) nor whoever made it (``second_person_required``)."""
        if record.volunteer_id == self.id:
            raise Forbidden("own_record")
        if not self.manages_org(record.org_id):
            raise Forbidden("coordinator_required")
        if record.recorded_by is not None and record.recorded_by == self.id:
            raise Forbidden("second_person_required")

    def approvable_records(self) -> sa.ColumnElement[bool]:
        """:meth:`require_may_approve` as SQL, for records of an org this actor manages."""
        return sa.and_(
            ServiceRecord.volunteer_id != self.id,
            sa.or_(ServiceRecord.recorded_by.is_(None), ServiceRecord.recorded_by != self.id),
        )

    def require_may_reject(self, record: ServiceRecord) -> None:
        """A coordinator of its org or an admin, never its volunteer (``own_record``)."""
        if record.volunteer_id == self.id:
            raise Forbidden("own_record")
        if not self.manages_org(record.org_id):
            raise Forbidden("coordinator_required")

    # --- certificates ----------------------------------------------------------------------------------------

    def may_see_certificate(self, certificate: Certificate) -> bool:
        """Its volunteer, the certifying org's coordinators, admins."""
        return certificate.volunteer_id == self.id or self.manages_org(certificate.org_id)

    def require_may_void(self, certificate: Certificate) -> None:
        """The certifying org's coordinators and admins, never on their own
        certificate (``own_certificate``)."""
        if self.id is not None and certificate.volunteer_id == self.id:
            raise Forbidden("own_certificate")
        if not self.manages_org(certificate.org_id):
            raise Forbidden("coordinator_required")


def party_branch_ids(user_id) -> sa.Select:
    """The approved party branches ``user_id`` (an id or a SQL column) belongs to, lowest id first:
    the one definition of "a party member" (党员: a member of an approved ``party_branch``)."""
    return (
        sa.select(Org.id)
        .join(OrgMember, OrgMember.org_id == Org.id)
        .where(OrgMember.user_id == user_id, Org.kind == PARTY_BRANCH, Org.is_approved)
        .order_by(Org.id)
    )


def admins() -> sa.Select:
    """The ids of the admins (a partial index answers it)."""
    return sa.select(User.id).where(User.is_admin)


def reviewers_of(posting: Posting) -> set[int]:
    """:meth:`Actor.reviews_posting` turned around: every user who may review
    ``posting`` — admins and its coordinators (of its org, or for an org-less
    district-managed posting of its district), never its author. One query."""
    reviewers = admins()
    coordinators = _coordinators_of_approved_orgs()
    if posting.org_id is not None:
        coordinators = coordinators.where(Org.id == posting.org_id)
    elif posting.kind in DISTRICT_MANAGED_KINDS:
        coordinators = coordinators.where(Org.district == posting.district)
    else:
        coordinators = None
    if coordinators is not None:
        reviewers = sa.union(reviewers, sa.select(coordinators.subquery().c.user_id))
    return set(db.session.scalars(reviewers)) - {posting.author_id}


def record_reviewers(org_ids: set[int]) -> dict[int, set[int]]:
    """The coordinators of each org of ``org_ids`` (approved orgs), who are told of its
    pending records: org id -> user ids. One query."""
    if not org_ids:
        return {}
    rows = db.session.execute(
        sa.select(OrgMember.org_id, OrgMember.user_id)
        .join(Org, Org.id == OrgMember.org_id)
        .where(OrgMember.org_id.in_(sorted(org_ids)), OrgMember.role == "coordinator", Org.is_approved)
    )
    found: dict[int, set[int]] = {org_id: set() for org_id in org_ids}
    for org_id, user_id in rows:
        found[org_id].add(user_id)
    return found


def memberships(user: User) -> list[tuple[Org, str]]:
    """Every org the user belongs to (any status), with their role."""
    rows = db.session.execute(
        sa.select(Org, OrgMember.role)
        .join(OrgMember, OrgMember.org_id == Org.id)
        .where(OrgMember.user_id == user.id)
        .order_by(Org.id)
    )
    return [(org, role) for org, role in rows]
