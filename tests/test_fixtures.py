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


def test_ports_for_servers_are_free_distinct_and_outside_the_ephemeral_range():
    import socket

    from tests.helpers import free_port

    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    assert all(20_000 <= port < 32_768 for port in ports)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))
        assert ports[0] not in [free_port() for _ in range(600)]  # a taken port is skipped
