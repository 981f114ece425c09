"""deploy/: the Dockerfile, compose.yaml and systemd units run the README's
commands, pin their images and keep /metrics inside.

No Docker daemon here to bring the stack up, so this checks the files against
each other and against the README instead.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# The commands, as the README writes them (after the virtualenv path and `--app wsgi`).
WEB = "gunicorn -c deploy/gunicorn.conf.py wsgi:app"
SCHEDULER = "flask scheduler run"
MIGRATE = "flask db upgrade"


def normalize(argv: list[str]) -> str:
    """``/opt/x/.venv/bin/flask --app wsgi db upgrade`` → ``flask db upgrade``."""
    argv = [Path(argv[0]).name, *argv[1:]]
    if argv[0] == "flask" and argv[1:3] == ["--app", "wsgi"]:
        argv = ["flask", *argv[3:]]
    return " ".join(argv)


def readme_commands() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = set()
    for snippet in re.findall(r"`([^`\n]+)`", text) + re.findall(r"^(?:\S*/)?(?:gunicorn|flask) .+$", text, re.M):
        try:
            argv = shlex.split(snippet)
        except ValueError:
            continue
        if argv and Path(argv[0]).name in ("gunicorn", "flask"):
            found.add(normalize(argv))
    return found


def runs(command: str, expected: str) -> bool:
    """``command`` is ``expected``, perhaps with options after it (``--metrics-port 9101``)."""
    return command == expected or command.startswith(expected + " -")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_readme_gives_the_three_commands():
    found = readme_commands()
    for expected in (WEB, SCHEDULER, MIGRATE):
        assert any(runs(command, expected) for command in found), (expected, sorted(found))


def test_the_image_runs_the_readmes_web_command_as_a_user_not_root():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    (base,) = re.findall(r"^FROM (\S+)", text, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base  # slim, pinned to a patch release
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "pip install -r requirements.txt" in text
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.M)
    assert normalize(json.loads(cmd)) == WEB
    assert "/healthz" in text


def test_compose_runs_the_readmes_commands_with_health_checks():
    services = compose()["services"]
    commands = {
        name: normalize(s["command"]) for name, s in services.items() if name in ("migrate", "web", "scheduler")
    }
    assert commands["migrate"] == MIGRATE
    assert commands["web"] == WEB
    assert runs(commands["scheduler"], SCHEDULER)
    assert {"web", "scheduler", "postgres", "redis", "nginx"} <= set(services)
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["nginx"]["healthcheck"]["test"])
    for name in ("postgres", "redis", "scheduler"):
        assert services[name]["healthcheck"]["test"], name
    # new code waits for the migration; everything reads its settings from .env
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert all(services[name]["env_file"] == "../.env" for name in ("migrate", "web", "scheduler"))
    # only nginx is published
    assert [name for name, s in services.items() if s.get("ports")] == ["nginx"]


def test_compose_pins_every_image():
    for name, service in compose()["services"].items():
        image = service["image"]
        if "build" in service:
            continue
        assert re.fullmatch(r"[a-z]+:\d+\.\d+(\.\d+)?(-\w+)?", image), (name, image)


def test_compose_serves_the_shipped_nginx_conf_with_its_upstream_moved():
    nginx = compose()["services"]["nginx"]
    assert "./nginx.conf:/etc/yongzhiyuan/nginx.conf:ro" in nginx["volumes"]
    script = nginx["command"][-1]
    old = re.search(r"s/(.+?);/", script).group(1)
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert conf.count(old + ";") == 1, "the upstream line compose rewrites is gone from nginx.conf"
    gunicorn_conf = (DEPLOY / "gunicorn.conf.py").read_text(encoding="utf-8")
    assert '"GUNICORN_BIND", "127.0.0.1:8000"' in gunicorn_conf  # where nginx.conf's upstream points


def test_nginx_keeps_metrics_off_the_public_side():
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert re.search(r"location = /metrics \{\s*return 404;\s*\}", conf)
    assert "client_max_body_size 1m;" in conf and "proxy_request_buffering on;" in conf


@pytest.mark.parametrize(
    ("name", "expected"), [("yongzhiyuan-web.service", WEB), ("yongzhiyuan-scheduler.service", SCHEDULER)]
)
def test_systemd_units_run_the_readmes_commands(name, expected):
    values = unit(name)
    (exec_start,) = values["ExecStart"]
    assert runs(normalize(shlex.split(exec_start)), expected)
    assert values["User"] != ["root"]
    assert values["EnvironmentFile"] == ["/etc/yongzhiyuan/env"]
    assert "FLASK_APP=wsgi" in values["Environment"]
    assert values["WorkingDirectory"] == ["/opt/yongzhiyuan"]


def test_every_documented_backup_is_written_for_its_owner_only():
    """A dump holds everyone's data: each pg_dump the docs show runs under umask 077."""
    for name in ("README.md", "docs/operations.md"):
        for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith(("pg_dump", "(umask")) or " pg_dump " in line:
                assert "umask 077" in line, (name, line)
