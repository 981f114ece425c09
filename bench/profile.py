"""Where a server's CPU goes under load: py-spy on every worker, summarised.

    with profile.recording(server, "bench/out/claim.txt"):   # py-spy must be on PATH
        ... drive the server ...
    print(profile.summary("bench/out/claim.txt"))

``py-spy record --subprocesses --format raw`` samples the gunicorn master and
its workers; the summary gives, for the samples spent inside a request (idle
threads waiting on a socket are left out), the share that passes through each
package (inclusive) or ends in it (self), and the shares of a few places the
performance work looks at.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

PACKAGES = (
    "sqlalchemy",
    "psycopg",
    "marshmallow",
    "flask_smorest",
    "flask_jwt_extended",
    "jwt",
    "flask_limiter",
    "werkzeug",
    "flask",
    "json",
    "app",
    "notifications",
    "mobile_api",
)
# Places inside a request, by a frame's "function (file)" text.
PLACES = {
    "authentication (jwt callbacks)": r"_decode_jwt_from_request|verify_jwt_in_request",
    "blocklist loader": r"token_revoked \(|is_revoked",
    "user loader": r"load_user \(",
    "the claim service": r"claim_posting \(",
    "notify": r"notify(_many)? \(",
    "response dump (schema)": r"\bdump \(.*marshmallow",
    "json encoding": r"\bdumps? \(.*json",
    "commit": r"\bcommit \(.*sqlalchemy/orm",
    "flush": r"\bflush \(.*sqlalchemy/orm",
}
IDLE = re.compile(
    r"select \(selectors|_worker \(concurrent|wait \(threading|accept \(|handle_request|murder_keepalived"
)


@contextlib.contextmanager
def recording(server: subprocess.Popen, out: str | Path, rate: int = 250):
    """Record the server's process tree while the block runs (no-op without py-spy)."""
    spy = shutil.which("py-spy") or os.environ.get("PY_SPY")
    if not spy:
        print("py-spy not found: no profile")
        yield None
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen(
        [spy, "record", "--subprocesses", "--nonblocking", "--format", "raw", "-r", str(rate), "-o", str(out)]
        + ["-p", str(server.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    try:
        yield out
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)


def read(path: str | Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in Path(path).read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def package_of(frame: str) -> str | None:
    match = re.search(r"\(([^:)]+)", frame)
    if not match:
        return None
    path = match.group(1)
    for package in PACKAGES:
        if f"/{package}/" in path or path.startswith(f"{package}/") or path.endswith(f"/{package}.py"):
            return package
    return None


def summary(path: str | Path) -> str:
    busy = [(frames, n) for frames, n in read(path) if not IDLE.search(frames[-1]) and "Thread" not in frames[-1]]
    total = sum(n for _, n in busy) or 1
    inclusive: Counter = Counter()
    own: Counter = Counter()
    places: Counter = Counter()
    for frames, n in busy:
        for package in {package_of(f) for f in frames} - {None}:
            inclusive[package] += n
        for frame in reversed(frames):
            package = package_of(frame)
            if package:
                own[package] += n
                break
        for label, pattern in PLACES.items():
            if any(re.search(pattern, frame) for frame in frames):
                places[label] += n
    lines = [f"{total} busy samples"]
    lines.append("package            inclusive   self")
    for package, n in inclusive.most_common():
        lines.append(f"{package:<18} {100 * n / total:8.1f} % {100 * own[package] / total:6.1f} %")
    lines.append("places (inclusive)")
    for label, n in places.most_common():
        lines.append(f"  {label:<32} {100 * n / total:5.1f} %")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(summary(sys.argv[1]))
