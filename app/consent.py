"""Consent to the current privacy policy, enforced at the edge for every write.

When ``PRIVACY_VERSION`` moves on, a user whose accepted version is another
one may still read everything, but every write they make with an access token
answers 428 ``consent_required`` until they accept the new version (``POST
/me/consents``). One check before any view runs, for every blueprint, so no
view can forget it. Writes that stay open (:data:`EXEMPT`): accepting the
policy, the token lifecycle and the public account flows (``auth``: register,
login, SMS codes, password reset, refresh, logout), unregistering a phone's
push token (signing out of that phone), and deleting the account or calling
the deletion off. The copy of one's data is a read.
"""

from __future__ import annotations

from flask import Flask, request

from app.errors import PreconditionRequired

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT_BLUEPRINTS = frozenset({"auth"})
EXEMPT = frozenset({"me.accept_consents", "me.delete_me", "me.cancel_deletion", "notifications.unregister_device"})


def init_app(app: Flask) -> None:
    app.before_request(_require_consent)


def _require_consent() -> None:
    if request.method not in WRITE_METHODS or request.url_rule is None:
        return
    if request.blueprint in EXEMPT_BLUEPRINTS or request.endpoint in EXEMPT:
        return
    from app.security import bearer_payload, bearer_session
    from app.services.accounts import consent_required

    payload = bearer_payload()
    if payload is None or payload.get("type") == "refresh":
        return  # no valid access token: the view answers 401 (or serves the public)
    user, revoked = bearer_session(payload)
    if user is None or revoked:
        return
    if consent_required(user):
        raise PreconditionRequired("consent_required")
