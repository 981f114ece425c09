"""docs/ answers an app developer's questions from a clone: the rulebook table in
docs/architecture.md is app/policy.py's, every error slug has an entry in
docs/app-guide.md, and nothing points outside the repository."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from app.errors import MESSAGES, STATUS_SLUGS
from app.policy import (
    ANYONE,
    CHECK_IN_OUT,
    CLAIMANT,
    COORDINATORS,
    FULFIL_CONFIRM,
    HAND_OVER,
    POLICIES,
    PROVIDER,
    PROVIDERS,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NAMES = {"wish": "微心愿", "project": "微项目", "charity": "微公益", "service": "微服务", "energy": "微能量"}
POSTED_BY = {
    ANYONE: "anyone signed in",
    COORDINATORS: "coordinators of `org_id`",
    PROVIDERS: "a volunteer, or coordinators of `org_id`",
}
FINISH = {
    FULFIL_CONFIRM: "claimant/provider fulfils, the other side confirms",
    CHECK_IN_OUT: "check in + check out on site",
    HAND_OVER: "managers hand the reward over",
}
CREDITED = {CLAIMANT: "claimant", PROVIDER: "provider (author)", None: "—"}
CAPACITY = {"one": "exactly 1", "slots": "N places (required)", "optional": "N or unlimited", "stock": "N in stock"}
AT_ONCE = {FULFIL_CONFIRM: "a coordinator of that org (or an admin) confirms", CHECK_IN_OUT: "checked out on site"}
PENDING = {FULFIL_CONFIRM: "a resident's confirmation, the scheduler's", CHECK_IN_OUT: "the settlement's check-out"}


def _recorded_by(policy) -> str:
    if policy.credited is None:
        return "— (no hours)"
    if policy.district_managed:
        return "its org, or the org whose coordinator approved it"
    if policy.posted_by == PROVIDERS:
        return "its org (posted without one: nothing is recorded)"
    return "its org"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _expiry(policy) -> str:
    return f"{policy.default_expiry_days} / {policy.max_expiry_days}" if policy.default_expiry_days else "—"


def rulebook_table() -> str:
    """The kinds × rules table, from app/policy.py (paste it into docs/architecture.md)."""
    rows = [
        ("posted by", lambda p: POSTED_BY[p.posted_by]),
        ("a resident's posting is reviewed", lambda p: _yes(p.reviewed)),
        ("managed, without an org, by", lambda p: "the district's coordinators" if p.district_managed else "—"),
        ("capacity", lambda p: CAPACITY[p.capacity]),
        ("who may claim", lambda p: "registered volunteers" if p.claimant_is_volunteer else "anyone signed in"),
        ("waitlist", lambda p: _yes(p.waitlist)),
        ("finished by", lambda p: FINISH[p.finish]),
        ("hours credited to", lambda p: CREDITED[p.credited]),
        ("needs starts_at and ends_at", lambda p: _yes(p.needs_schedule)),
        ("expiry default / max (days)", _expiry),
        ("claim deadline (hours)", lambda p: str(p.claim_ttl_hours) if p.claim_ttl_hours else "—"),
        ("counts toward the open-claim limit", lambda p: _yes(p.counts_toward_claim_limit)),
        ("settled after the end", lambda p: p.settlement or "—"),
        ("auto-confirmed after AUTO_CONFIRM_DAYS", lambda p: _yes(p.auto_confirm)),
        ("energy cost at claim", lambda p: _yes(p.has_energy_cost)),
        ("bonus energy on confirmation", lambda p: str(p.confirm_bonus_points) if p.confirm_bonus_points else "—"),
        ("beneficiary (masked contact)", lambda p: _yes(p.has_beneficiary)),
        ("matched to volunteers (for me, nearby alerts)", lambda p: _yes(p.matched_to_volunteers)),
        ("nearby alert to party members first (PARTY_FIRST_MINUTES)", lambda p: _yes(p.party_first)),
        ("in the calendar feed", lambda p: _yes(p.in_calendar)),
        ("fulfilment public as the posting's story once confirmed", lambda p: _yes(p.public_story)),
        ("hours recorded by (谁组织谁记录)", _recorded_by),
        ("recorded at once when", lambda p: AT_ONCE[p.finish] if p.credited else "—"),
        ("pending until a second person approves", lambda p: PENDING[p.finish] if p.credited else "—"),
    ]
    kinds = list(POLICIES)
    lines = [
        "| rule | " + " | ".join(f"`{k}` {NAMES[k]}" for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for label, value in rows:
        lines.append(f"| {label} | " + " | ".join(value(POLICIES[k]) for k in kinds) + " |")
    return "\n".join(lines)


# Who may do what: each act and the Actor predicate that decides it (app/services/permissions.py).
PREDICATES = (
    ("post a kind (for an org)", "require_may_post"),
    ("claim", "require_may_claim"),
    ("mark a claim done", "may_fulfil"),
    ("confirm a claim", "require_may_confirm"),
    ("review (approve or reject) a posting", "reviews_posting"),
    ("manage a posting", "manages_posting"),
    ("see the beneficiary's contact", "is_contact"),
    ("award honor hours", "require_may_award"),
    ("make a record that is recorded at once", "stands_behind"),
    ("approve a record", "require_may_approve"),
    ("reject a record", "require_may_reject"),
    ("see a record", "may_see_record"),
    ("void a certificate", "require_may_void"),
    ("ask to join an org", "require_may_join"),
    ("approve or refuse a request to join", "require_may_decide_join"),
    ("report to a community (双报到)", "require_party_member"),
    ("see a volunteer's party block", "sees_party"),
    ("list an org's party members", "require_may_list_party_members"),
    ("export a branch's party-member report", "require_may_export_party_report"),
)


def permissions_table() -> str:
    """The acts × ``Actor`` predicates table, each rule the predicate's own docstring
    (its first paragraph), from app/services/permissions.py."""
    from app.services.permissions import Actor

    lines = ["| act | `Actor.` | rule |", "|---|---|---|"]
    for act, name in PREDICATES:
        doc = inspect.getdoc(getattr(Actor, name)) or ""
        rule = " ".join(doc.split("\n\n")[0].split()).replace("``", "`").replace("|", "\\|")
        lines.append(f"| {act} | `{name}` | {rule} |")
    return "\n".join(lines)


def _section(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    assert match, f"docs lack the <!-- {name}:start --> … <!-- {name}:end --> markers"
    return match.group(1)


def test_the_rulebook_table_is_the_policy():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    expected = rulebook_table()
    assert _section(text, "rulebook") == expected, "docs/architecture.md is out of date; the table is:\n" + expected


def test_the_permissions_table_is_the_actor():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    expected = permissions_table()
    assert _section(text, "permissions") == expected, "docs/architecture.md is out of date; the table is:\n" + expected


def test_every_error_slug_is_explained_in_the_app_guide():
    text = (DOCS / "app-guide.md").read_text(encoding="utf-8")
    slugs = set(MESSAGES) | set(STATUS_SLUGS.values())
    explained = set(re.findall(r"^\| `([a-z_]+)` \| \d{3}", text, re.M))  # the rows: | `slug` | status | …
    assert slugs <= explained, sorted(slugs - explained)
    assert explained <= slugs, sorted(explained - slugs)  # no slug the app never sends


def test_architecture_has_a_diagram_and_the_guide_the_topics():
    architecture = (DOCS / "architecture.md").read_text(encoding="utf-8")
    assert "```mermaid" in architecture
    guide = (DOCS / "app-guide.md").read_text(encoding="utf-8")
    for topic in ("refresh", "Idempotency-Key", "next_cursor", "Asia/Shanghai", "notification_id", "curl"):
        assert topic in guide, topic
    for kind in POLICIES:
        assert f"`{kind}`" in guide, kind


def test_readme_and_docs_link_only_inside_the_repository():
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        text = path.read_text(encoding="utf-8")
        # nothing outside the checkout: not the spec folder beside it, not a path of this machine
        assert "../shared" not in text and str(ROOT.parent) + "/" not in text, path
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert not target.startswith("/") and ".." not in target, (path, target)
            # docs/operations.md belongs to the operations guide, written on its own.
            if target != "docs/operations.md" and not (path.parent / target).exists():
                raise AssertionError(f"{path.name} links to a missing {target}")
