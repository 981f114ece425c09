"""The docs are executed: every ``sh`` block of README.md and docs/app-guide.md
runs, in order, against a server started as ``make run`` starts it.

The blocks are read from the Markdown itself (there is no second copy of the
commands here). Each document runs in one bash of its own (``set -euo
pipefail``), block after block, so a variable or a helper an earlier block sets
is there for the later ones — and a block that uses one nobody set fails. The
shell starts in a fresh directory that looks like a checkout (links to the
repository's files, a new ``instance/``), with ``API`` preset — the server's
address, which the documents default to ``http://127.0.0.1:5000/api/v1`` — and
``INSTANCE_PATH`` (that ``instance/``, for the README's ``flask`` commands).

The conventions, as docs/app-guide.md states them for its readers:

- A block fenced ```` ```sh norun ```` is not run (installing packages,
  starting the server — the suite does that itself, as below).
- Every ``curl`` answers 2xx, unless its command carries a comment
  ``# → 409 already_claimed`` (a status, and for an error its slug): then the
  last curl of that command answers exactly that. A marker no curl reached is an
  error too.

The server is ``make run`` itself (``flask db upgrade``, ``flask seed``, the
banner of ``app.devserver``, ``flask run`` with the embedded scheduler) on
SQLite under the temporary ``instance/``, on a free port, with the SMS codes in
``instance/server.log`` where the guide reads them. Under ``CLOCK_SHIFT_DAYS``
the server's clock runs ahead, and so does the clock the examples read with
``python3`` (a ``sitecustomize`` that shifts ``datetime.now``/``date.today``,
put on the path of ``python3`` only).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "app-guide.md")
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"#\s*→\s*(\d{3})(?:\s+([a-z_]+))?")
# What the examples' shell inherits from the test's environment: a newcomer's shell,
# not the suite's settings (no DATABASE_URL, APP_ENV … of the test run).
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "USER", "CLOCK_SHIFT_DAYS")
SERVER_START_SECONDS = 180
RUN_SECONDS = 600

# bash run before the blocks: strict mode, and a curl that records each answer's
# status (the headers of the last response) and body, and where in which block it
# was called (the top-level line of the block, also through helper functions).
PRELUDE = r"""
set -euo pipefail
shopt -s inherit_errexit
curl() {
  local n=$((${#FUNCNAME[@]} - 1)) i=0 at
  while [ $i -lt $n ] && [ "${FUNCNAME[$((i + 1))]}" != source ]; do i=$((i + 1)); done
  at="${BASH_SOURCE[$((i + 1))]##*/}:${BASH_LINENO[$i]}"
  local call; call=$(mktemp "$DOC_CALLS/call.XXXXXX")
  local rc=0
  command curl -D "$call.headers" "$@" | tee "$call.body" || rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\n' "$at" "$rc" "$call" >> "$DOC_CALLS/log"
  return "$rc"
}
trap 'echo "doc-examples: failed at ${BASH_SOURCE[0]##*/}:${LINENO}: $BASH_COMMAND" >&2' ERR
"""

SHIFTED_CLOCK = """\
import datetime as _datetime
import os as _os

_shift = _datetime.timedelta(days=int(_os.environ.get("CLOCK_SHIFT_DAYS") or 0))
_Datetime, _Date = _datetime.datetime, _datetime.date


class datetime(_Datetime):
    @classmethod
    def now(cls, tz=None):
        return _Datetime.now(tz) + _shift

    @classmethod
    def utcnow(cls):
        return _Datetime.utcnow() + _shift


class date(_Date):
    @classmethod
    def today(cls):
        return _Date.today() + _shift


_datetime.datetime, _datetime.date = datetime, date
"""


@dataclass
class Block:
    document: str
    number: int
    line: int  # of the fence in the document
    code: str
    run: bool

    @property
    def file(self) -> str:
        return f"{Path(self.document).stem}-{self.number:02d}.sh"

    def markers(self) -> dict[int, tuple[int, str | None]]:
        """Line in the block → (status, slug) its ``# → …`` comment names."""
        found = {}
        for number, text in enumerate(self.code.splitlines(), 1):
            match = MARKER.search(text)
            if match:  # the words after a success's status say what it answers: no slug
                status = int(match.group(1))
                found[number] = (status, match.group(2) if status >= 400 else None)
        return found

    def command_of(self, line: int) -> range:
        """The lines of the command that line ``line`` belongs to (bash names a call
        by its first line or its last, depending on the command's shape)."""
        for span in command_spans(self.code):
            if line in span:
                return span
        return range(line, line + 1)


def command_spans(code: str) -> list[range]:
    """Line ranges of the top-level commands of a shell script: a command goes on
    past a newline escaped by a backslash, inside quotes, and inside ``$(…)``/``(…)``.
    Enough of bash's grammar for the documents' examples (no here-documents)."""
    spans, stack, start, line, i = [], [], 1, 1, 0
    while i < len(code):
        char = code[i]
        top = stack[-1] if stack else None
        if char == "\\":
            if code[i + 1 : i + 2] == "\n":
                line += 1
            i += 2
            continue
        if char == "\n":
            if not stack:
                spans.append(range(start, line + 1))
                start = line + 1
            line += 1
        elif top == '"':
            if char == '"':
                stack.pop()
            elif code.startswith("$(", i):
                stack.append("(")
                i += 1
        elif char == "'":
            end = code.find("'", i + 1)
            end = len(code) if end < 0 else end
            line += code.count("\n", i, end)
            i = end
        elif char == '"':
            stack.append('"')
        elif char == "(":
            stack.append("(")
        elif char == ")" and top == "(":
            stack.pop()
        elif char == "#" and (i == 0 or code[i - 1] in " \t\n;("):
            end = code.find("\n", i)
            i = (len(code) if end < 0 else end) - 1
        i += 1
    if start <= line and code[-1:] != "\n":
        spans.append(range(start, line + 1))
    return spans


def shell_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        info = match.group(1).split()
        if not info or info[0] not in ("sh", "bash", "shell", "console"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(path.name, len(blocks) + 1, line, match.group(2), "norun" not in info[1:]))
    return blocks


def test_the_documents_have_shell_blocks_and_mark_the_ones_not_run():
    """The extraction itself: both documents have blocks to run, the examples use
    nothing a newcomer's machine may lack, and a marker names a real status (an
    error's with its slug)."""
    for path in DOCUMENTS:
        blocks = shell_blocks(path)
        assert [b for b in blocks if b.run], path
        for block in blocks:
            assert block.code.strip(), (path, block.line)
            # what a newcomer's machine may lack: JSON is read with python3 (`get` in the
            # app guide), keys are made with python3 (`new_key`)
            commands = re.sub(r"(^|\s)#.*$", "", block.code, flags=re.M)  # not in a comment
            for tool in ("jq", "uuidgen"):
                used = re.search(rf"(^|[|;&(\s]){tool}\b", commands, re.M)
                assert not (block.run and used), f"{path.name}:{block.line}: {tool} is not on every machine"
            for status, slug in block.markers().values():
                assert 100 <= status <= 599, (path, block.line, status)
                assert status < 400 or slug, f"{path.name}:{block.line}: an error marker names its slug"


def _checkout_view(work: Path) -> None:
    """A directory that looks like a checkout: a link to every top-level entry of
    the repository but ``instance/`` (new) — the examples' files land here — and
    ``.venv``, the environment running the suite (as ``make run``'s VENV below)."""
    for entry in ROOT.iterdir():
        if entry.name not in ("instance", ".git", ".pytest_cache", ".venv"):
            (work / entry.name).symlink_to(entry)
    (work / ".venv").symlink_to(sys.prefix)
    (work / "instance").mkdir()


def _shifted_python(work: Path, env: dict[str, str]) -> None:
    """Under CLOCK_SHIFT_DAYS, ``python3`` in the examples reads the shifted clock
    too (the server's and the seed's run ahead by the same setting)."""
    real = shutil.which("python3", path=env["PATH"])
    assert real, "the examples need python3"
    site = work.parent / "shifted-clock"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SHIFTED_CLOCK, encoding="utf-8")
    bin_dir = work.parent / "shifted-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(site))}"${{PYTHONPATH:+:$PYTHONPATH}}" exec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # make, flask and tee: the group this test started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``make run`` in a checkout view, on a free port; yields (work dir, env, API)."""
    base = tmp_path_factory.mktemp("doc-examples")
    work = base / "checkout"
    work.mkdir()
    _checkout_view(work)
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    venv = Path(sys.prefix)  # the interpreter running the suite, as `make run`'s VENV
    env["PATH"] = env.get("PATH", os.defpath)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    server_env = {
        **env,
        "INSTANCE_PATH": str(work / "instance"),
        "FLASK_SKIP_DOTENV": "1",  # not a developer's .env: the embedded defaults
    }
    log = (base / "make-run.out").open("wb")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "-o", f"{venv}/bin/.installed", "run"]
        + [f"VENV={venv}", "HOST=127.0.0.1", f"PORT={port}"],
        cwd=work,
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: make, flask and tee stop together
    )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail("make run stopped:\n" + (base / "make-run.out").read_text(errors="replace")[-4000:])
            try:
                with urllib.request.urlopen(f"{api}/legal", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("make run did not serve:\n" + (base / "make-run.out").read_text(errors="replace")[-4000:])
            time.sleep(0.5)
        if os.environ.get("CLOCK_SHIFT_DAYS", "0") not in ("", "0"):
            _shifted_python(work, env)
        yield work, {**env, "INSTANCE_PATH": str(work / "instance"), "API": api}, base
    finally:
        _stop(proc)
        log.close()


def _run_document(path: Path, served) -> None:
    work, env, base = served
    blocks = [b for b in shell_blocks(path) if b.run]
    scripts = base / f"{path.stem}-scripts"
    calls = base / f"{path.stem}-calls"
    scripts.mkdir()
    calls.mkdir()
    lines = [PRELUDE]
    for block in blocks:
        (scripts / block.file).write_text(block.code, encoding="utf-8")
        lines.append(f"echo '== {path.name}:{block.line}' >&2")
        lines.append(f"source {shlex.quote(str(scripts / block.file))}")
    runner = scripts / "run.sh"
    runner.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(
        ["bash", str(runner)],
        cwd=work,
        env={**env, "DOC_CALLS": str(calls)},
        capture_output=True,
        timeout=RUN_SECONDS,
    )
    output = (done.stdout.decode(errors="replace")[-3000:], done.stderr.decode(errors="replace")[-6000:])

    by_file = {b.file: b for b in blocks}
    records = []
    for row in (calls / "log").read_text().splitlines() if (calls / "log").exists() else []:
        at, rc, call = row.split("\t")
        name, line = at.rsplit(":", 1)
        records.append((by_file[name], int(line), int(rc), Path(call)))
    assert records or done.returncode, f"{path.name}: no curl ran"
    # A marker names the answer of the last curl of its command (one given a token by
    # `$(login …)` on the same line has the call inside it run first).
    expected_at = {}
    for index, (block, line, _, _) in enumerate(records):
        for marked, expected in block.markers().items():
            if line in block.command_of(marked):
                expected_at[(block.file, marked)] = (index, expected)
    expectations = {index: expected for index, expected in expected_at.values()}
    reached = {(file, marked) for file, marked in expected_at}
    problems = []
    for index, (block, line, rc, call) in enumerate(records):
        where = f"{path.name}:{block.line + line} (block at line {block.line}, its line {line})"
        if rc != 0:
            problems.append(f"{where}: curl exited {rc}")
            continue
        statuses = re.findall(r"^HTTP/\S+ (\d{3})", Path(f"{call}.headers").read_text(errors="replace"), re.M)
        status = int(statuses[-1]) if statuses else None
        body = Path(f"{call}.body").read_bytes()
        expected = expectations.get(index)
        if expected is None:
            if status is None or not 200 <= status < 300:
                problems.append(f"{where}: answered {status}, not 2xx: {body[:300]!r}")
            continue
        want, slug = expected
        if status != want:
            problems.append(f"{where}: answered {status}, the guide says {want}: {body[:300]!r}")
        elif slug is not None:
            try:
                error = json.loads(body).get("error")
            except ValueError:
                error = None
            if error != slug:
                problems.append(f"{where}: answered {status} {error!r}, the guide says {slug!r}")
    # the answers that were not as the document says come first: often the cause
    assert done.returncode == 0, (
        f"{path.name}: an example failed\n"
        + "\n".join(problems)
        + f"\n--- stdout\n{output[0]}\n--- stderr\n{output[1]}"
    )
    for block in blocks:
        for line in block.markers():
            if (block.file, line) not in reached:
                problems.append(f"{path.name}:{block.line + line}: a `# →` marker on a line where no curl ends")
    assert not problems, "\n".join(problems) + f"\n--- stderr\n{output[1]}"


def test_every_example_runs_as_written(served):
    """README.md first, then the guide, each in a shell of its own, on one server."""
    for document in DOCUMENTS:
        _run_document(document, served)
