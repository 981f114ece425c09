"""Absolute URLs the public follows: the verify URL printed on a certificate,
a calendar feed's URL. Built on ``PUBLIC_BASE_URL`` when it is set, else on the
host the request came to (set it in production: a forged Host header must not
end up in a QR code)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request, url_for


def public_base_url() -> str:
    return (current_app.config.get("PUBLIC_BASE_URL") or request.host_url).rstrip("/")


def public_url(endpoint: str, **values) -> str:
    """The absolute public URL of ``endpoint`` (as for ``url_for``)."""
    return public_base_url() + url_for(endpoint, **values)


def public_host() -> str:
    """The public host name (the domain of calendar UIDs)."""
    return urlsplit(public_base_url()).hostname or "localhost"
