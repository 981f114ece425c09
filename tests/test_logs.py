"""Structured logs: the JSON fields of a request and of a job run, the format
defaults, and redaction of what must never be logged."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from app import clock, jobs
from app.config import TestConfig
from app.logs import REDACTED, JsonLineFormatter, TextFormatter, log_format_of, redact
from tests.factories import make_posting, make_user, make_volunteer
from tests.log_leaks import LeakWatcher, find_leaks

T0 = clock.utcnow


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_request_logs_json_lines_carrying_its_context(app, make_app, capsys):
    app = make_app(LOG_FORMAT="json")  # the `app` fixture empties the tables afterwards
    poster = make_user(app)
    volunteer = make_volunteer(app)
    wish = make_posting(app, poster)

    @app.route("/_test/log-inside")
    def log_inside():
        logging.getLogger("app.test").warning("inside the view")
        return {"ok": True}

    client = app.test_client()
    capsys.readouterr()
    resp = client.post(
        f"/api/v1/postings/{wish}/claims", json={}, headers={**volunteer.headers, "X-Request-ID": "req-claim-1"}
    )
    assert resp.status_code == 201, resp.get_json()
    client.get("/_test/log-inside", headers={"X-Request-ID": "req-inside-2"})
    lines = json_lines(capsys.readouterr().err)

    (access,) = [line for line in lines if line["logger"] == "app.access" and line["request_id"] == "req-claim-1"]
    assert access["user_id"] == volunteer.id
    assert access["method"] == "POST"
    assert access["route"] == "/api/v1/postings/<int:posting_id>/claims"
    assert access["status"] == 201
    assert isinstance(access["duration_ms"], int | float) and access["duration_ms"] >= 0
    assert access["level"] == "INFO" and access["time"]

    (inside,) = [line for line in lines if line["message"] == "inside the view"]
    assert (inside["request_id"], inside["method"], inside["route"]) == ("req-inside-2", "GET", "/_test/log-inside")
    assert "user_id" not in inside  # nobody signed in
    (closing,) = [line for line in lines if line["logger"] == "app.access" and line["request_id"] == "req-inside-2"]
    assert closing["status"] == 200


def test_the_request_id_is_the_answers_header_and_a_bad_one_is_replaced(app, make_app, capsys):
    client = make_app(LOG_FORMAT="json").test_client()
    capsys.readouterr()
    resp = client.get("/api/v1/no-such-thing", headers={"X-Request-ID": "bad id with spaces"})
    assert resp.status_code == 404
    err = capsys.readouterr().err
    (access,) = [line for line in json_lines(err) if line["logger"] == "app.access"]
    assert access["request_id"] == resp.headers["X-Request-ID"] != "bad id with spaces"
    assert access["status"] == 404 and access["route"] is None  # no rule matched
    assert "no-such-thing" not in err  # the raw path (a feed token, say) is never logged


def test_a_job_run_logs_its_name_rows_and_duration_as_fields(app, make_app, capsys):
    app = make_app(LOG_FORMAT="json")  # the `app` fixture empties the tables afterwards
    poster = make_user(app)
    make_posting(app, poster, expires_at=T0() + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    capsys.readouterr()
    with app.app_context():
        jobs.expire_postings()
    (line,) = [line for line in json_lines(capsys.readouterr().err) if line["logger"] == "app.jobs"]
    assert line["job"] == "expire_postings"
    assert line["rows"] == 1
    assert line["counts"] == {"closed": 0, "expired": 1, "warned": 0, "batches": 3}
    assert isinstance(line["duration_ms"], int) and line["duration_ms"] >= 0
    assert line["lease_busy"] is False and line["error"] is None
    assert "request_id" not in line


def test_log_format_defaults_to_text_in_development_and_json_otherwise():
    assert log_format_of({"APP_ENV": "development"}) == "text"
    assert log_format_of({"APP_ENV": "production"}) == "json"
    assert log_format_of({"APP_ENV": "production"}, debug=True) == "text"
    assert log_format_of({"APP_ENV": "development", "LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(RuntimeError, match="LOG_FORMAT"):
        log_format_of({"LOG_FORMAT": "xml"})


LEAKY = (
    "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl cut eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9 "
    "phone +8613800138000 and 13912345678, "
    "ID 33020319900101123X, url postgresql://app:hunter2pass@db/yz, key " + TestConfig.JWT_SECRET_KEY
)


@pytest.mark.parametrize("formatter", [JsonLineFormatter(), TextFormatter()], ids=["json", "text"])
def test_tokens_phones_id_numbers_and_secrets_are_redacted(app, formatter):
    record = logging.LogRecord("app.test", logging.WARNING, __file__, 1, "said: %s", (LEAKY,), None)
    record.detail = {"phone": "13800138000"}
    try:
        raise ValueError(LEAKY)
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert find_leaks(LEAKY, [TestConfig.JWT_SECRET_KEY]) == ["jwt", "phone", "id_number", "secret"]
    assert find_leaks(line, [TestConfig.JWT_SECRET_KEY]) == []
    assert "hunter2pass" not in line and REDACTED in line
    if isinstance(formatter, JsonLineFormatter):
        parsed = json.loads(line)
        assert parsed["message"].startswith("said: token [redacted]")
        assert "ValueError" in parsed["exc_info"]


def test_digits_inside_an_id_are_not_taken_for_a_number():
    line = '{"request_id": "d828293701124475889e8c2d03195014", "other": "e13800138000abcdef0123456789abcd"}'
    assert redact(line) == line and find_leaks(line, []) == []
    assert redact("call 13800138000.") == f"call {REDACTED}."


def test_the_session_watcher_catches_a_line_that_leaks():
    watcher = LeakWatcher([TestConfig.ID_HASH_KEY])
    watcher.formatters = (logging.Formatter("%(message)s"),)  # an unredacted output, as a bug would write it
    watcher.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "hash key %s", (TestConfig.ID_HASH_KEY,), None))
    watcher.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "nothing to see", (), None))
    assert watcher.seen == 2 and len(watcher.leaks) == 1 and watcher.leaks[0].startswith("secret:")
