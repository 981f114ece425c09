"""volunteer_planner's shift sign-up, run beside ours by ``bench/sidebyside.py --planner PATH``.

Nothing of coders4help/volunteer_planner is kept in this repository: PATH is a
checkout of it (or a git directory of one, e.g. what ``git clone --mirror``
makes: its HEAD is exported next to it), and this module sets it up there:

- a virtualenv ``PATH/.bench-venv`` with its ``requirements/base.txt``,
  factory-boy (its own test factories build the facility), gunicorn and
  psycopg 3 — the driver our app uses;
- ``PATH/bench_settings.py``: its base settings on PostgreSQL database
  ``yz_bench_planner`` of the same server (persistent connections, its
  database sessions and messages as in production, MD5 passwords so that
  loading the users is quick, the cache in memory instead of memcached);
- migrations, one facility, and per claim of ours one shift of one slot and
  one volunteer signed in (a session row and its cookie).

A sign-up is what its "join" button posts: ``join_shift`` to the shift's page
as a signed-in user with a CSRF token, answered 302. After each phase the rows
are counted: each 302 must be one ``ShiftHelper`` row. ``race()`` sends 20
volunteers at once at one shift of one slot and counts who got in: its check of
the free slots and the INSERT are two statements with nothing locked between.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

from bench import driver
from bench.dbsetup import ensure_database

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "yz_bench_planner"
SETTINGS = """\
# Written by {bench} for the side-by-side benchmark; not part of this project.
import os
from volunteer_planner.settings.base import *  # noqa: F401,F403

SECRET_KEY = {secret_key!r}  # made per run, like ours
DEBUG = False
ALLOWED_HOSTS = ["*"]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "HOST": {host!r},
        "PORT": {port!r},
        "NAME": {name!r},
        "USER": {user!r},
        "PASSWORD": {password!r},
        "CONN_MAX_AGE": 600,
    }}
}}
STATICFILES_STORAGE = "django.contrib.staticfiles.storage.StaticFilesStorage"
CACHES = {{"default": {{"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
LOGGING = {{"version": 1, "disable_existing_loggers": False, "root": {{"level": "WARNING"}}}}
"""

# Run inside volunteer_planner's Django (manage.py shell): the facility, then N
# shifts of one slot and N volunteers with a session each, in bulk.
SEED = """
import datetime, json, sys
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from accounts.models import UserAccount
from scheduler.models import Shift, ShiftHelper
from tests.factories import FacilityFactory, TaskFactory, WorkplaceFactory

n = __N__
ShiftHelper.objects.all().delete()
Shift.objects.all().delete()
UserAccount.objects.all().delete()
User.objects.all().delete()
facility = FacilityFactory.create()
task = TaskFactory.create(facility=facility)
workplace = WorkplaceFactory.create(facility=facility)
start = timezone.now().replace(microsecond=0) + datetime.timedelta(days=1)
# a shift each, an hour apart: no two overlap, so no sign-up conflicts with another
shifts = Shift.objects.bulk_create(
    Shift(slots=1, task=task, workplace=workplace, facility=facility,
          starting_time=start + datetime.timedelta(hours=2 * i),
          ending_time=start + datetime.timedelta(hours=2 * i + 1))
    for i in range(n + 1)
)
users = User.objects.bulk_create(
    User(username=f"v{i}", email=f"v{i}@example.org", password="md5$x$0", is_active=True) for i in range(n + 20)
)
UserAccount.objects.bulk_create(UserAccount(user=u) for u in users)
cookies = []
for u in users:
    s = SessionStore()
    s["_auth_user_id"] = str(u.pk)
    s["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    s["_auth_user_hash"] = u.get_session_auth_hash()
    s.create()
    cookies.append(s.session_key)
local = [timezone.localtime(s.starting_time) for s in shifts]
paths = [f"/helpdesk/{facility.slug}/shifts/{t.year}/{t.month}/{t.day}/{s.pk}" for s, t in zip(shifts, local)]
print("SEEDED" + json.dumps({"paths": paths, "shifts": [s.pk for s in shifts], "sessions": cookies}))
"""


class Planner:
    def __init__(self, path: Path, url: str, port: int) -> None:
        self.path = _checkout(path.resolve())
        self.port = port
        self.url = sa.engine.make_url(url).set(database=DATABASE)
        self.venv = self.path / ".bench-venv"
        self.overbooked = "-"
        self.csrf = secrets.token_hex(16)  # 32 characters: Django takes the unmasked secret
        self.next = 0

    # --- setting up ---------------------------------------------------------------

    def prepare(self, sign_ups: int) -> None:
        """The virtualenv (once), the settings, a fresh database, the seed."""
        if not (self.venv / "bin" / "gunicorn").exists():
            print("volunteer_planner: creating its virtualenv (once)", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
            subprocess.run(
                [
                    str(self.venv / "bin" / "pip"),
                    "install",
                    "-q",
                    "-r",
                    str(self.path / "requirements" / "base.txt"),
                    "factory-boy==3.2.1",
                    "gunicorn==23.0.0",
                    "psycopg[binary]==3.3.9",
                ],
                check=True,
            )
        ensure_database(self.url.render_as_string(hide_password=False), fresh=True)
        (self.path / "bench_settings.py").write_text(
            SETTINGS.format(
                bench="bench/planner.py",
                host=self.url.host or "127.0.0.1",
                port=str(self.url.port or 5432),
                name=DATABASE,
                user=self.url.username or "postgres",
                password=self.url.password or "",
                secret_key=secrets.token_urlsafe(48),
            )
        )
        self._manage("migrate", "--noinput")
        out = self._manage("shell", "-c", SEED.replace("__N__", str(sign_ups)))
        seeded = json.loads(out.split("SEEDED", 1)[1])
        self.paths, self.shifts, self.sessions = seeded["paths"], seeded["shifts"], seeded["sessions"]
        self.race_path, self.race_shift = self.paths.pop(), self.shifts.pop()

    def _manage(self, *argv: str) -> str:
        done = subprocess.run(
            [str(self.venv / "bin" / "python"), "manage.py", *argv],
            cwd=self.path,
            env=self._env(),
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def _env(self) -> dict[str, str]:
        return {**os.environ, "DJANGO_SETTINGS_MODULE": "bench_settings", "PYTHONPATH": str(self.path)}

    def start(self):
        return driver.start_gunicorn(
            "volunteer_planner.wsgi:application",
            self.port,
            env=self._env(),
            cwd=self.path,
            gunicorn=self.venv / "bin" / "gunicorn",
            ready_path="/auth/login/",
        )

    # --- running ------------------------------------------------------------------

    def _request(self, path: str, shift: int, session: str) -> driver.Request:
        body = urlencode({"join_shift": shift, "csrfmiddlewaretoken": self.csrf}).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"sessionid={session}; csrftoken={self.csrf}",
            "Referer": f"http://127.0.0.1:{self.port}{path}",
        }
        return driver.Request("POST", path, headers, body)

    def phase(self, server, n: int, clients: int) -> driver.Figures:
        """n sign-ups, each a distinct volunteer on a distinct shift; each 302 must be one row."""
        start, self.next = self.next, self.next + n
        requests = [
            self._request(self.paths[i], self.shifts[i], self.sessions[i + 20]) for i in range(start, start + n)
        ]
        before = self._helpers()
        result = driver.run("planner", self.port, server, requests, clients=clients)
        made = self._helpers() - before
        assert result.outcomes == {302: n}, f"volunteer_planner: {result.outcomes}"
        assert made == n, f"volunteer_planner: {n} sign-ups answered, {made} rows"
        result.label = "claim planner"
        return result

    def race(self, server, clients: int = 20) -> int:
        """20 volunteers at once on one shift of one slot: how many got in beyond it."""
        requests = [self._request(self.race_path, self.race_shift, self.sessions[i]) for i in range(20)]
        driver.run("planner race", self.port, server, requests, clients=clients, procs=4)
        with sa.create_engine(self.url).connect() as conn:
            count = sa.text("SELECT count(*) FROM scheduler_shifthelper WHERE shift_id = :s")
            got_in = conn.scalar(count, {"s": self.race_shift})
        self.overbooked = f"{max(0, got_in - 1)}/20"
        return got_in

    def _helpers(self) -> int:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.scalar(sa.text("SELECT count(*) FROM scheduler_shifthelper"))
        finally:
            engine.dispose()


def _checkout(path: Path) -> Path:
    """A work tree of volunteer_planner: ``path`` itself, or HEAD of the git
    directory ``path`` exported once into ``path.parent / "volunteer_planner"``."""
    if (path / "manage.py").exists():
        return path
    if (path / "HEAD").exists() and (path / "objects").exists():
        tree = path.parent / "volunteer_planner"
        if not (tree / "manage.py").exists():
            tree.mkdir(exist_ok=True)
            export = ["git", "--git-dir", str(path), "archive", "HEAD"]
            archive = subprocess.run(export, check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        return tree
    raise SystemExit(f"{path}: neither a checkout of volunteer_planner nor its git directory")
