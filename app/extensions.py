"""Extension objects, bound to an app in create_app() with init_app."""

from __future__ import annotations

from collections import OrderedDict

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy

from app.database import RoutingSession
from app.models.base import Base


class DocumentedApi(Api):
    """flask-smorest's Api, building the OpenAPI document once per process for one
    set of settings.

    Turning every view's schemas into the document is most of what create_app()
    costs (about a fifth of a second). A process that builds many apps from the
    same settings — the test suite builds one per test — reuses the document it
    built for them; any setting that differs builds a new one, so an app never
    serves a document made for other settings. The steps that add to the document
    run only while it is being built (``building``), and ``finish_document``
    keeps it once complete.
    """

    KEPT = 4  # documents kept (the test suite's own settings, and a few variations)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._documents: OrderedDict[str, tuple] = OrderedDict()
        self._settings = ""
        self.building = True

    def init_app(self, app, *, spec_kwargs=None):
        self._settings = repr(sorted((key, repr(value)) for key, value in app.config.items()))
        super().init_app(app, spec_kwargs=spec_kwargs)
        built = self._documents.get(self._settings)
        self.building = built is None
        if built is not None:
            self._documents.move_to_end(self._settings)
            self.spec, self.flask_plugin, self.ma_plugin = built

    def _init_spec(self, **spec_kwargs):
        # A document kept for these settings is taken in init_app: starting an
        # empty one first (plugins, default responses) would be thrown away.
        if self._settings not in self._documents:
            super()._init_spec(**spec_kwargs)

    def register_blueprint(self, blp, *, parameters=None, **options):
        if self.building:
            return super().register_blueprint(blp, parameters=parameters, **options)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][options.get("name", blp.name)] = self
        self._app.register_blueprint(blp, **options)
        return None

    def finish_document(self, finish) -> None:
        """Run ``finish(spec)`` on a document being built, then keep it for these settings."""
        if not self.building:
            return
        finish(self.spec)
        self._documents[self._settings] = (self.spec, self.flask_plugin, self.ma_plugin)
        while len(self._documents) > self.KEPT:
            self._documents.popitem(last=False)
        self.building = False


db = SQLAlchemy(model_class=Base, session_options={"class_": RoutingSession})
migrate = Migrate()
jwt = JWTManager()
api = DocumentedApi()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
