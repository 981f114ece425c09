"""The audit log: who did what to whose data (append-only, in the caller's transaction)."""

from __future__ import annotations

from typing import Any

from app.extensions import db
from app.models import AuditEntry


def audit(actor_id: int | None, action: str, target_type: str, target_id: int | None, **data: Any) -> None:
    """Append one entry, e.g. ``audit(user.id, "posting.approve", "posting", 42)``."""
    db.session.add(
        AuditEntry(actor_id=actor_id, action=action, target_type=target_type, target_id=target_id, data=data)
    )
