"""CI's schemathesis run fails when an operation was never tested past authentication
(.ci/schemathesis_reach.py): answers a request can get before its token is read prove
nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = {
    "paths": {
        "/api/v1/me/password": {"post": {"operationId": "change_password"}},
        "/api/v1/postings/{posting_id}": {"get": {"operationId": "get_posting"}},
        "/api/v1/postings/mine": {"get": {"operationId": "my_postings"}},
    }
}


def _reach(tmp_path: Path, answers: list[tuple[str, str, int]]) -> subprocess.CompletedProcess:
    har = {
        "log": {
            "entries": [
                {"request": {"method": method, "url": f"http://127.0.0.1:1{path}"}, "response": {"status": status}}
                for method, path, status in answers
            ]
        }
    }
    (tmp_path / "openapi.json").write_text(json.dumps(DOCUMENT), encoding="utf-8")
    (tmp_path / "run.har").write_text(json.dumps(har), encoding="utf-8")
    script = ROOT / ".ci/schemathesis_reach.py"
    files = [str(tmp_path / "openapi.json"), str(tmp_path / "run.har")]
    return subprocess.run([sys.executable, str(script), *files], capture_output=True, text=True, check=False)


def test_every_operation_answered_past_authentication_passes(tmp_path):
    run = _reach(
        tmp_path,
        [
            ("POST", "/api/v1/me/password", 422),
            ("GET", "/api/v1/postings/7", 404),
            ("GET", "/api/v1/postings/mine", 200),
        ],
    )
    assert run.returncode == 0, run.stdout
    assert "reached 3 of 3" in run.stdout


def test_answers_before_the_token_is_read_do_not_count(tmp_path):
    run = _reach(
        tmp_path,
        [
            ("POST", "/api/v1/me/password", 415),
            ("POST", "/api/v1/me/password", 401),
            ("POST", "/api/v1/me/password", 413),
            ("GET", "/api/v1/postings/7", 200),
        ],
    )
    assert run.returncode == 1
    assert "change_password: never answered past authentication (only [401, 413, 415])" in run.stdout
    assert "my_postings: never called" in run.stdout  # /postings/mine is not /postings/{id}
    assert "reached 1 of 3" in run.stdout
