"""The application factory."""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask, current_app, g, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Config
from app.errors import register_error_handlers
from app.extensions import api, db, jwt, limiter, migrate
from app.secrets import ensure_keys

# Blueprints whose answers carry tokens even to a request without one (sign-up, login).
TOKEN_BLUEPRINTS = frozenset({"auth"})
# Blueprints whose writes share one per-user budget (RATELIMIT_USER_WRITES).
WRITE_LIMITED_BLUEPRINTS = (
    "me",
    "orgs",
    "postings",
    "notifications",
    "claims",
    "certificates",
    "calendar",
    "photos",
    "records",
)


class Utf8JSONProvider(DefaultJSONProvider):
    """JSON answers with keys in the order the schemas give them, and text in UTF-8
    as it is, not as \\u escapes (half the bytes for Chinese, and readable in a log).
    A lone surrogate, which has no UTF-8, is escaped rather than failing the answer."""

    sort_keys = False
    ensure_ascii = False

    def dumps(self, obj, **kwargs) -> str:
        text = super().dumps(obj, **kwargs)
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:
                return super().dumps(obj, **{**kwargs, "ensure_ascii": True})
        return text


def create_app(config: type | Mapping | None = None) -> Flask:
    """Build the app. ``config`` is a Config class or a mapping of overrides."""
    overrides = config if isinstance(config, Mapping) else {}
    # instance/ holds the SQLite default and development keys; INSTANCE_PATH moves it.
    instance_path = overrides.get("INSTANCE_PATH") or os.environ.get("INSTANCE_PATH") or None
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True, static_folder=None)
    app.config.from_object(Config)
    app.json = Utf8JSONProvider(app)
    if isinstance(config, type):
        app.config.from_object(config)
    elif config is not None:
        app.config.from_mapping(config)
    if app.config.get("TRUSTED_PROXIES"):
        # The per-IP rate limit needs the client's address, not the proxy's.
        hops = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    os.makedirs(app.instance_path, exist_ok=True)
    ensure_keys(app)
    from app import replica, storage

    storage.init_app(app)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        path = os.path.join(app.instance_path, "yongzhiyuan.sqlite")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    from app import database

    database.init_app(app)

    from app.logs import configure_logging

    configure_logging(app)

    from app.skills import load_skills

    # Parsed once, so a malformed SKILLS stops the app at start, not at a request.
    app.extensions["skills"] = load_skills(app.config.get("SKILLS"))
    from app.districts import load_districts

    # The same for DISTRICTS; the config keeps the codes every check reads.
    app.extensions["districts"] = load_districts(app.config.get("DISTRICTS"))
    app.config["DISTRICTS"] = app.extensions["districts"].codes
    db.init_app(app)
    from app.errors import close_sessions_before_answering

    close_sessions_before_answering(app)
    from app import i18n

    i18n.init_app(app)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
    jwt.init_app(app)
    from app import inputs

    inputs.init_app(app)  # before the limiter, which reads the body for its keys
    _retry_after_only_when_waiting(app)  # before the limiter: it then runs after the limiter's headers
    limiter.init_app(app)
    from app.idempotency import IdempotencyKeyDocs
    from mobile_api.openapi import ErrorResponsesPlugin, ErrorSchema, GeneratorPlugin, finalize

    api.ERROR_SCHEMA = ErrorSchema  # documents our envelope, not flask-smorest's
    generator = GeneratorPlugin(app.config["DISTRICTS"], app.config["PRIVACY_VERSION"])
    api.init_app(app, spec_kwargs={"extra_plugins": [generator, ErrorResponsesPlugin(), IdempotencyKeyDocs()]})

    from app import security

    security.register_jwt_callbacks(app)
    register_error_handlers(app)
    _register_request_id(app)
    from app import consent, idempotency

    # Before the Idempotency-Key is claimed: a 428 is not an answer to keep and replay.
    consent.init_app(app)
    idempotency.init_app(app)
    _register_blueprints(app)
    replica.init_app(app)  # after the blueprints: it routes some of their views
    api.finish_document(lambda spec: finalize(spec, generator))
    _register_docs_assets(app)
    from app.cli import register_cli

    register_cli(app)
    if not app.testing:
        from app import metrics
        from app.scheduler import is_dev_server_process, start_embedded

        # Only under `flask run`, in the process that serves (not the reloader's
        # watcher): the metrics on their own address, as gunicorn's workers serve them
        # (deploy/gunicorn.conf.py), and the embedded scheduler when asked for.
        if is_dev_server_process():
            metrics.serve_dev(app)
        if app.config.get("SCHEDULER_EMBEDDED"):
            start_embedded(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from app.security import user_rate_key
    from mobile_api import (
        auth,
        calendar,
        certificates,
        claims,
        districts,
        health,
        legal,
        me,
        notifications,
        orgs,
        photos,
        postings,
        records,
        skills,
        stats,
    )

    writes = limiter.shared_limit(
        lambda: current_app.config["RATELIMIT_USER_WRITES"],
        scope="user-writes",
        key_func=user_rate_key,
        methods=["POST", "PUT", "PATCH", "DELETE"],
    )
    for module in (
        health,
        auth,
        legal,
        me,
        orgs,
        postings,
        skills,
        notifications,
        claims,
        stats,
        certificates,
        calendar,
        photos,
        records,
        districts,
    ):
        # The limiter and the blueprints live as long as the process; mark once.
        if module.blp.name in WRITE_LIMITED_BLUEPRINTS and not getattr(module.blp, "user_writes_limited", False):
            writes(module.blp)
            module.blp.user_writes_limited = True
        api.register_blueprint(module.blp)
    # The public certificate check's HTML page (not part of the JSON API).
    app.register_blueprint(certificates.pages)


def _register_request_id(app: Flask) -> None:
    from app.logs import assign_request_id

    # app/logs.py assigns g.request_id when the request starts, and logs carry it.
    @app.after_request
    def common_headers(response):
        response.headers["X-Request-ID"] = g.get("request_id") or assign_request_id()
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.headers.get("Authorization") or request.blueprint in TOKEN_BLUEPRINTS:
            # an answer for one person (or holding their tokens) is kept by no cache
            response.headers["Cache-Control"] = "no-store"
        return response


def _retry_after_only_when_waiting(app: Flask) -> None:
    """``Retry-After`` asks a client to wait: it goes on 429 and 503 answers only.
    Flask-Limiter writes it, with its ``X-RateLimit-*`` headers, on every answer of a
    limited route; after-request functions run last-registered first, so this one,
    registered before the limiter's, sees the finished headers."""

    @app.after_request
    def retry_after_only_when_waiting(response):
        if response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        return response


def _register_docs_assets(app: Flask) -> None:
    """Serve Swagger UI's files from the pinned package, not from a CDN."""
    import swagger_ui_bundle

    @app.route("/api/v1/docs/static/<path:filename>")
    def swagger_ui_asset(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
