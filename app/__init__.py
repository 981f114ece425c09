"""The application factory."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Mapping

import sqlalchemy as sa
from flask import Flask, g, request, send_from_directory
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Config
from app.errors import register_error_handlers
from app.extensions import api, db, jwt, limiter, migrate

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL, a busy timeout and foreign keys for every SQLite connection."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def create_app(config: type | Mapping | None = None) -> Flask:
    """Build the app. ``config`` is a Config class or a mapping of overrides."""
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.config.from_object(Config)
    if isinstance(config, type):
        app.config.from_object(config)
    elif config is not None:
        app.config.from_mapping(config)
    if app.config.get("TRUSTED_PROXIES"):
        # The per-IP rate limit needs the client's address, not the proxy's.
        hops = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        path = os.path.join(app.instance_path, "yongzhiyuan.sqlite")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_pre_ping": True,
            "pool_size": 10,
            "max_overflow": 20,
            **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
        }

    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    from app.skills import load_skills

    # Parsed once, so a malformed SKILLS stops the app at start, not at a request.
    app.extensions["skills"] = load_skills(app.config.get("SKILLS"))
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
    jwt.init_app(app)
    limiter.init_app(app)
    from mobile_api.openapi import ErrorResponsesPlugin, ErrorSchema

    api.ERROR_SCHEMA = ErrorSchema  # documents our envelope, not flask-smorest's
    api.init_app(app, spec_kwargs={"extra_plugins": [ErrorResponsesPlugin()]})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})

    from app import security

    security.register_jwt_callbacks(app)
    register_error_handlers(app)
    _register_request_id(app)
    _register_json_only(app)
    from app import idempotency

    idempotency.init_app(app)
    _register_blueprints(app)
    _register_docs_assets(app)

    from app.cli import register_cli

    register_cli(app)
    if app.config.get("SCHEDULER_EMBEDDED") and not app.testing:
        from app.scheduler import start_embedded

        # Only under `flask run`, in the process that serves (not the reloader's watcher).
        start_embedded(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from mobile_api import auth, claims, health, me, notifications, orgs, postings, skills, stats

    for module in (health, auth, me, orgs, postings, skills, notifications, claims, stats):
        api.register_blueprint(module.blp)


def _register_request_id(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def echo_request_id(response):
        response.headers["X-Request-ID"] = getattr(g, "request_id", None) or uuid.uuid4().hex
        return response


def _register_json_only(app: Flask) -> None:
    """A body that is not JSON is refused (415) rather than read as empty."""
    from werkzeug.exceptions import UnsupportedMediaType

    @app.before_request
    def require_json_body() -> None:
        if request.url_rule is None or request.method not in ("POST", "PUT", "PATCH"):
            return
        has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if has_body and not request.is_json:
            raise UnsupportedMediaType()


def _register_docs_assets(app: Flask) -> None:
    """Serve Swagger UI's files from the pinned package, not from a CDN."""
    import swagger_ui_bundle

    @app.route("/api/v1/docs/static/<path:filename>")
    def swagger_ui_asset(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
