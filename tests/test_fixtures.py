"""The shortcuts tests/conftest.py takes to keep the suite fast build the same apps
as the long way round."""

from __future__ import annotations

from werkzeug.routing.rules import Rule


def test_shared_url_builders_build_what_werkzeug_compiles_for_each_route(app):
    samples = {"IntegerConverter": 7, "UnicodeConverter": "两 words", "PathConverter": "a/b c.png"}
    fresh = Rule._compile_builder.compile_builder
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 50
    for rule in rules:
        values = {name: samples[type(converter).__name__] for name, converter in rule._converters.items()}
        for append_unknown in (False, True):
            extra = {"page": "2", "q": "志愿"} if append_unknown else {}
            built = rule._build_unknown if append_unknown else rule._build
            assert built(**values, **extra) == fresh(rule, append_unknown).__get__(rule)(**values, **extra), rule.rule
    with app.test_request_context():
        from flask import url_for

        assert url_for("postings.get_posting", posting_id=12, lang="en") == "/api/v1/postings/12?lang=en"


def test_the_app_fixture_has_the_same_settings_in_every_test(app, tmp_path):
    """Nothing of the test's own (its tmp_path) is in the ``app`` fixture's settings,
    so every test's app reuses the OpenAPI document the first one built."""
    from app.extensions import api

    assert str(tmp_path) not in repr(dict(app.config))
    assert api._documents[api._settings][0] is api.spec
