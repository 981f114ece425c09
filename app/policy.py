"""The rulebook: every kind of posting as data, every status set, the hours arithmetic.

The five kinds (五微) share one ``postings`` table and one ``claims`` table and
differ only by the policy below; services, jobs, schemas and the tests read
this module instead of asking ``if kind == ...``. Nothing here touches the
database, so models may import it too.

Posting states::

    pending_review ──approve──▶ open ──(claims)──▶ claimed | full ──▶ closed
                  └─reject──▶ rejected      any live state ──cancel──▶ cancelled
    open | pending_review ──expires_at passed, no live claim──▶ expired
    open | claimed | full ──ends_at passed (events, services, rewards)──▶ closed

Claim states::

    active ──fulfil──▶ fulfilled ──confirm (or the scheduler)──▶ confirmed  (wish, service)
    active ──hand over──▶ confirmed                                         (energy)
    active ──check in, check out (or settlement)──▶ confirmed              (project, charity)
    waitlisted ──a place frees──▶ active                                    (project, charity)
    active | waitlisted ──withdraw──▶ withdrawn
    active, never checked in, event over ──▶ no_show
    active past its deadline ──▶ released        live, posting gone or over ──▶ cancelled
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask_babel import lazy_pgettext

POSTING_KINDS = ("wish", "project", "charity", "service", "energy")
# What a person reads for each kind (微心愿, 微项目, 微公益, 微服务, 微能量 in zh-CN).
KIND_NAMES = {
    "wish": lazy_pgettext("posting kind", "wish"),
    "project": lazy_pgettext("posting kind", "project"),
    "charity": lazy_pgettext("posting kind", "charity activity"),
    "service": lazy_pgettext("posting kind", "service"),
    "energy": lazy_pgettext("posting kind", "energy reward"),
}
POSTING_STATUSES = ("pending_review", "open", "claimed", "full", "closed", "rejected", "cancelled", "expired")
CLAIM_STATUSES = ("active", "waitlisted", "fulfilled", "confirmed", "withdrawn", "released", "cancelled", "no_show")


def kind_name(kind: str) -> str:
    """The kind's name in the language in force."""
    return str(KIND_NAMES.get(kind, kind))


# --- posting status sets ---------------------------------------------------------------------------------------

# Seen only by the people concerned (404 for everyone else): not yet published,
# refused, or taken down (a wish withdrawn while still under review was never public).
HIDDEN_POSTING_STATUSES = ("pending_review", "rejected", "cancelled")
# Everything else is public: the wish wall, a posting's page, the public figures.
PUBLIC_POSTING_STATUSES = tuple(s for s in POSTING_STATUSES if s not in HIDDEN_POSTING_STATUSES)
# Not over yet: such a posting may still be edited or cancelled.
LIVE_POSTING_STATUSES = ("pending_review", "open", "claimed", "full")
# Published and not over: the states that end by themselves at ends_at or expires_at.
RUNNING_POSTING_STATUSES = ("open", "claimed", "full")
# Every place taken: a place given back reopens such a posting (or, past its deadline, ends it).
FILLED_POSTING_STATUSES = ("claimed", "full")
# Where a claim beyond capacity may wait in line (kinds with a waitlist).
QUEUEING_POSTING_STATUSES = ("open", "full")

# --- claim status sets -----------------------------------------------------------------------------------------

# Still going: a user holds at most one per posting (a unique partial index).
LIVE_CLAIM_STATUSES = ("active", "waitlisted", "fulfilled")
# Holding (or having used) one of the posting's places: counted in ``claimed_count``.
# Only withdrawn, released and cancelled give a place back.
PLACE_CLAIM_STATUSES = ("active", "fulfilled", "confirmed", "no_show")
# The claimant is one of the beneficiary's contacts (sees the phone and address).
CONTACT_CLAIM_STATUSES = ("active", "fulfilled")
# The work was done (marked done, or done and confirmed).
DONE_CLAIM_STATUSES = ("fulfilled", "confirmed")
# Taken on and not given up: what the public figures call a claimed wish.
TAKEN_CLAIM_STATUSES = ("active", "fulfilled", "confirmed")
# Over: nothing more happens to such a claim.
FINISHED_CLAIM_STATUSES = tuple(s for s in CLAIM_STATUSES if s not in LIVE_CLAIM_STATUSES)
# Given up or taken away before the work: the claimant no longer holds a place
# (a calendar shows such a sign-up as cancelled).
DROPPED_CLAIM_STATUSES = ("withdrawn", "released", "cancelled")


def sql_in(column: str, values: tuple[str, ...]) -> str:
    """``column IN ('a', 'b')`` as SQL text, for partial-index predicates built from a set above."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# --- the kinds -------------------------------------------------------------------------------------------------

# Who may post a kind.
ANYONE = "anyone"  # any signed-in user, for themself (a coordinator also for a beneficiary)
COORDINATORS = "coordinators"  # coordinators of the org named in org_id (admins too)
PROVIDERS = "providers"  # the provider: a registered volunteer, or a coordinator for an org

# How a claim is finished.
FULFIL_CONFIRM = "fulfil_confirm"  # the one who did the work marks it done; the other side confirms
CHECK_IN_OUT = "check_in_out"  # on site: check in, check out
HAND_OVER = "hand_over"  # the posting's managers hand the reward over

# Whose service hours a finished claim carries.
CLAIMANT = "claimant"
PROVIDER = "provider"  # the posting's author


@dataclass(frozen=True)
class KindPolicy:
    """The rules of one kind of posting."""

    kind: str
    posted_by: str
    # A resident's posting waits for review (pending_review); one posted for an org does not.
    reviewed: bool
    # Without an org, the coordinators of the posting's district manage it (review,
    # edit, cancel, confirm, see the contact); with one, the org's coordinators do.
    district_managed: bool
    # "one": exactly one claim; "slots": N places (required); "optional": N or
    # unlimited (None); "stock": N items in stock (required).
    capacity: str
    claimant_is_volunteer: bool  # False: any resident may claim (book a service)
    waitlist: bool  # a claim beyond capacity waits in line
    finish: str
    credited: str | None  # whose hours a finished claim is (None: no hours)
    needs_schedule: bool = False  # starts_at and ends_at required
    default_expiry_days: int | None = None
    max_expiry_days: int | None = None
    claim_ttl_hours: int | None = None  # a claim's deadline (due_at); None: no deadline
    # Active claims count towards the volunteer's ACTIVE_WISH_CLAIM_LIMIT.
    counts_toward_claim_limit: bool = False
    # The poster is told of each new claim (wish_claimed).
    poster_told_of_claims: bool = False
    event_reminders: bool = False  # claimants reminded 24 h and 1 h before starts_at
    has_energy_cost: bool = False
    has_beneficiary: bool = False
    # Closed once ends_at has passed (a wish ends by confirmation or expiry instead).
    closes_at_end: bool = True
    # Live claims settled EVENT_SETTLE_HOURS after ends_at: "on_site" (checked in →
    # checked out at the end, never came → no_show, still waiting → cancelled),
    # "release" (a booking never marked done → released); None: left as they are.
    settlement: str | None = None
    auto_confirm: bool = False  # fulfilled claims confirmed by the scheduler after AUTO_CONFIRM_DAYS
    confirm_bonus_points: int = 0  # energy on top of the hours when confirmed
    # The kind asks volunteers to come and do something (it needs people): it is
    # matched to them — listed "for me" near their home, ranked by their skills,
    # and 微呼百应, the volunteers around it are told when it opens with places free.
    matched_to_volunteers: bool = False
    # Its nearby alert goes to party members first (党员志愿者优先): those reporting to
    # its community (or, without one, any in range); everyone else in range only
    # PARTY_FIRST_MINUTES later if it is still open (app.services.nearby_alerts).
    party_first: bool = False
    # A claim on it is something to be at or to get done by a time: it appears in
    # the claimant's calendar feed (a reward hand-over does not).
    in_calendar: bool = True
    # Once its one claim is confirmed, the fulfilment's note and photos are shown
    # on the posting to everyone (its story, 微故事), unless the confirmer keeps
    # the photos private.
    public_story: bool = False

    @property
    def capacity_required(self) -> bool:
        return self.capacity in ("slots", "stock")

    @property
    def on_site(self) -> bool:
        return self.finish == CHECK_IN_OUT


POLICIES: dict[str, KindPolicy] = {
    policy.kind: policy
    for policy in (
        KindPolicy(
            "wish",  # 微心愿
            posted_by=ANYONE,
            reviewed=True,
            district_managed=True,
            capacity="one",
            claimant_is_volunteer=True,
            waitlist=False,
            finish=FULFIL_CONFIRM,
            credited=CLAIMANT,
            default_expiry_days=30,
            max_expiry_days=90,
            claim_ttl_hours=168,
            counts_toward_claim_limit=True,
            poster_told_of_claims=True,
            has_beneficiary=True,
            closes_at_end=False,
            auto_confirm=True,
            confirm_bonus_points=5,
            matched_to_volunteers=True,
            party_first=True,
            public_story=True,
        ),
        KindPolicy(
            "project",  # 微项目
            posted_by=COORDINATORS,
            reviewed=False,
            district_managed=False,
            capacity="slots",
            claimant_is_volunteer=True,
            waitlist=True,
            finish=CHECK_IN_OUT,
            credited=CLAIMANT,
            needs_schedule=True,
            event_reminders=True,
            settlement="on_site",
            matched_to_volunteers=True,
        ),
        KindPolicy(
            "charity",  # 微公益
            posted_by=COORDINATORS,
            reviewed=False,
            district_managed=False,
            capacity="optional",
            claimant_is_volunteer=True,
            waitlist=True,
            finish=CHECK_IN_OUT,
            credited=CLAIMANT,
            needs_schedule=True,
            event_reminders=True,
            settlement="on_site",
            matched_to_volunteers=True,
        ),
        KindPolicy(
            "service",  # 微服务
            posted_by=PROVIDERS,
            reviewed=False,
            district_managed=False,
            capacity="optional",
            claimant_is_volunteer=False,
            waitlist=False,
            finish=FULFIL_CONFIRM,
            credited=PROVIDER,
            settlement="release",
            auto_confirm=True,
        ),
        KindPolicy(
            "energy",  # 微能量 (爱心超市)
            posted_by=COORDINATORS,
            reviewed=False,
            district_managed=False,
            capacity="stock",
            claimant_is_volunteer=True,
            waitlist=False,
            finish=HAND_OVER,
            credited=None,
            has_energy_cost=True,
            in_calendar=False,
        ),
    )
}


def kinds_where(**rule: object) -> tuple[str, ...]:
    """The kinds whose policy has every ``attribute=value`` of ``rule``, e.g.
    ``kinds_where(waitlist=True)``; for set-based SQL (``Posting.kind.in_(...)``)."""
    return tuple(k for k, p in POLICIES.items() if all(getattr(p, name) == value for name, value in rule.items()))


# --- hours, minutes and energy ----------------------------------------------------------------------------------

HALF_HOUR = 30
# Minutes a volunteer may report for one fulfilled wish or service (8 hours).
MAX_REPORTED_MINUTES = 480
# Credit minutes one on-site claim (check-in to check-out) may earn.
MAX_ON_SITE_MINUTES = 12 * 60
# Honor minutes one record may carry.
MAX_HONOR_MINUTES = 24 * 60
# 微能量: 10 points per credited hour, paid per whole half hour.
POINTS_PER_HALF_HOUR = 5
# Check-in opens this long before starts_at, within this distance of the site.
CHECK_IN_OPENS_BEFORE = timedelta(minutes=30)
CHECK_IN_RADIUS_KM = 0.5
# Warnings before a deadline: the poster of a posting about to expire
# (posting_expiring), the claimant of a claim about to be released (claim_due_soon).
EXPIRY_WARNING = timedelta(hours=24)
DUE_WARNING = timedelta(hours=24)


def whole_hours(span: timedelta) -> int:
    """A span as the whole hours the texts name (``24`` for a day)."""
    return int(span.total_seconds() // 3600)


def whole_minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


def metres(km: float) -> int:
    return round(km * 1000)


def hours(minutes: int | None) -> float:
    """Minutes as hours with one decimal, the way every figure in the API states them."""
    return round((minutes or 0) / 60, 1)


def minutes_between(start, end) -> int:
    """Whole minutes from ``start`` to ``end`` (0 when ``end`` is not later)."""
    return max(0, int((end - start).total_seconds() // 60))


def points_for_minutes(minutes: int) -> int:
    """Energy for credited minutes: 10 points an hour, whole half hours only (89 min → 10)."""
    return max(0, int(minutes)) // HALF_HOUR * POINTS_PER_HALF_HOUR


def on_site_credit(checked_in, checked_out, starts_at, ends_at) -> tuple[object, int]:
    """(start, minutes) credited to an on-site claim: the overlap of
    check-in..check-out with the event's starts_at..ends_at, at most 12 hours.
    A missing bound (an event posted before both were required) leaves that
    side to the claim's own time."""
    start = max(checked_in, starts_at) if starts_at is not None else checked_in
    end = min(checked_out, ends_at) if ends_at is not None else checked_out
    return start, min(minutes_between(start, end), MAX_ON_SITE_MINUTES)


# --- service records (志愿服务记录) ------------------------------------------------------------------------------

RECORD_KINDS = ("credit", "honor")
# A record's life (谁组织谁记录: the organisation that organised the service records it)::
#
#     pending ──a second person of the recording org approves──▶ recorded
#             └─────────────────────rejects, with a reason──────▶ rejected
#     (written recorded at once when a coordinator of that org stands behind it)
RECORD_STATUSES = ("pending", "recorded", "rejected")
# What counts: hours, star level, stats, exports, certificates, hour-based energy.
COUNTED_RECORD_STATUSES = ("recorded",)
# Holding the volunteer's time: no two of these windows of one volunteer overlap.
TIME_HOLDING_RECORD_STATUSES = ("pending", "recorded")
# Records one bulk approval may name.
MAX_BULK_APPROVAL = 100


def windows_overlap(start, end, other_start, other_end) -> bool:
    """Whether two half-open windows [start, end) share a moment (an empty one shares none)."""
    return start < end and other_start < other_end and start < other_end and other_start < end


def longest_uncovered(start, end, covered) -> tuple[object, object]:
    """The longest stretch of [start, end) outside every window of ``covered``
    (``(s, e)`` pairs), the earliest of equal ones; ``(start, start)`` when none is left.

    A check-out credits only time not already credited elsewhere; a record has
    one window, so a stretch cut in two by another record keeps its longer part."""
    best = (start, start)
    cursor = start
    for other_start, other_end in sorted(covered):
        if other_end <= cursor or not other_start < other_end:
            continue
        if other_start >= end:
            break
        if other_start > cursor and other_start - cursor > best[1] - best[0]:
            best = (cursor, other_start)
        cursor = max(cursor, other_end)
        if cursor >= end:
            break
    if cursor < end and end - cursor > best[1] - best[0]:
        best = (cursor, end)
    return best


STAR_THRESHOLDS_HOURS = (100, 300, 600, 1000, 1500)


def average_rating(total: int, count: int) -> float | None:
    """A volunteer's reputation: the mean of ``count`` ratings summing to ``total``
    (one per rater, each rater's latest), to 2 decimals; None before the first."""
    return round(total / count, 2) if count else None


def star_level(minutes: int) -> int:
    """Star level 0-5 (星级志愿者) by credit + honor hours at 100/300/600/1000/1500 h."""
    return sum(1 for threshold in STAR_THRESHOLDS_HOURS if minutes >= threshold * 60)


# --- accounts: SMS codes, consent, the end of an account ---------------------------------------------------------

# What a code may be asked for (短信验证码的用途).
SMS_PURPOSES = ("register", "login", "reset_password", "change_phone", "delete_account", "guardian_consent")
# Purposes whose code goes only to a number that has an account; to any other the
# answer is the same and nothing is sent.
SMS_ACCOUNT_PURPOSES = ("login", "reset_password", "delete_account")
# Purposes whose number must not have an account yet (409 phone_taken).
SMS_NEW_NUMBER_PURPOSES = ("register", "change_phone")
SMS_CODE_DIGITS = 6
SMS_CODE_TTL = timedelta(minutes=5)
# Wrong tries that spend a code.
SMS_CODE_MAX_ATTEMPTS = 5
# One code per phone per this long, whatever the purpose.
SMS_RESEND_INTERVAL = timedelta(seconds=60)
SMS_PER_PHONE_PER_DAY = 10
SMS_PER_ADDRESS_PER_HOUR = 20

# A person under this age (full years, from the ID number's birth date) needs a
# guardian's consent to register as a volunteer (个人信息保护法: 不满十四周岁).
GUARDIAN_CONSENT_UNDER_AGE = 14

# What an erased account's names read (the records it leaves stay under its volunteer number).
ERASED_NAME = "已注销"


def age_on(born, today) -> int:
    """Full years from ``born`` to ``today``."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


# --- photos ----------------------------------------------------------------------------------------------------

# What a photo is uploaded for: it may be used only there (a posting's photo_ids,
# a fulfilment's photo_ids, PATCH /me avatar_photo_id).
PHOTO_PURPOSES = ("posting", "fulfil", "avatar")
PHOTO_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp")
# A photo's status: pending (its upload URL was handed out), ready (its bytes
# were checked and re-encoded), used (it was attached: once — a photo taken off
# what it belonged to is not used again), discarded (its bytes were not a photo
# of the declared type, or its owner's account was erased).
# Not attached yet, and so still the uploader's to use.
UNUSED_PHOTO_STATUSES = ("pending", "ready")
# Re-encoded: the original upload is no longer needed.
CHECKED_PHOTO_STATUSES = ("ready", "used")
# Never to be used again: deleted once they belong to nothing.
SPENT_PHOTO_STATUSES = ("used", "discarded")
MAX_PHOTO_BYTES = 10 * 1024 * 1024
# Photos one posting or one fulfilment carries.
MAX_PHOTOS = 9
# Pixels a photo may have (a 64-megapixel phone photo fits); more is refused
# before a single pixel is decoded (a decompression bomb).
MAX_PHOTO_PIXELS = 64 * 1024 * 1024
DISPLAY_LONGEST_SIDE = 1600
THUMB_LONGEST_SIDE = 320
# How long the presigned PUT of an upload, and the presigned GET of a photo, work.
UPLOAD_URL_TTL = timedelta(minutes=10)
PHOTO_URL_TTL = timedelta(hours=1)
# A photo URL is handed out again, unchanged, for this long (the app's image cache
# keeps working); so a URL the API gives works at least PHOTO_URL_TTL minus this.
PHOTO_URL_REUSE = timedelta(minutes=5)
# An upload nobody attached is removed this long after its URL was handed out.
UNUSED_PHOTO_TTL = timedelta(hours=24)
# Uploads one user may hold unused at once (each up to MAX_PHOTO_BYTES of storage).
MAX_UNUSED_UPLOADS = 30
