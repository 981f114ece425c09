"""docs/operations.md is the configuration reference: every environment
variable the code reads appears there, with its default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"
SOURCES = ("app", "notifications", "mobile_api", "wsgi.py", "deploy/gunicorn.conf.py")
# The helpers that read a variable: the name first, the default (if any) second.
READERS = {"get", "getenv", "env_int", "env_bool", "env_list", "_env"}
NO_DEFAULT = object()


def _files():
    for source in SOURCES:
        path = ROOT / source
        yield from (sorted(path.rglob("*.py")) if path.is_dir() else [path])


def _literal(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return "1" if node.value else "0"
    if isinstance(node, ast.Constant) and node.value is not None:
        return str(node.value)
    return NO_DEFAULT


def environment_variables() -> dict[str, object]:
    """Every variable read from the environment → its literal default (NO_DEFAULT when none is written)."""
    found: dict[str, object] = {}
    for path in _files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        fallbacks = {}  # `os.environ.get("X") or 10`: the default is after the `or`
        for node in ast.walk(tree):
            if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and len(node.values) == 2:
                fallbacks[id(node.values[0])] = node.values[1]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name not in READERS:
                continue
            if isinstance(func, ast.Attribute) and name == "get":
                owner = func.value
                if not (isinstance(owner, ast.Attribute) and owner.attr == "environ"):
                    continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                variable = first.value
            elif isinstance(first, ast.Name) and first.id in constants:
                variable = constants[first.id]
            else:
                continue  # a helper's own parameter (env_int(name, ...))
            if not re.fullmatch(r"[A-Z][A-Z0-9_]+", variable):
                continue
            default = _literal(node.args[1]) if len(node.args) > 1 else NO_DEFAULT
            if id(node) in fallbacks:
                default = _literal(fallbacks[id(node)])
            if found.get(variable, NO_DEFAULT) is NO_DEFAULT:
                found[variable] = default
    return found


def documented_rows() -> dict[str, str]:
    """``| `NAME` | default | … |`` rows of the doc's tables: each variable → its default cell."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and line.startswith("|"):
            for variable in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
                rows[variable] = cells[1]
    return rows


def test_the_reader_finds_the_variables_it_should():
    found = environment_variables()
    assert found["JWT_ACCESS_MINUTES"] == "15"
    assert found["RATELIMIT_ENABLED"] == "1"
    assert found["DB_POOL_TIMEOUT_SECONDS"] == "3"  # `or 3`
    assert found["PROMETHEUS_MULTIPROC_DIR"] is NO_DEFAULT  # through a module constant
    assert found["GUNICORN_BIND"] == "127.0.0.1:8000"
    assert found["SECRET_KEY"] is NO_DEFAULT


def test_every_variable_is_documented_with_its_default():
    rows = documented_rows()
    missing = []
    for variable, default in sorted(environment_variables().items()):
        if variable not in rows:
            missing.append(f"{variable}: no row")
        elif not rows[variable]:
            missing.append(f"{variable}: the default cell is empty")
        elif default is not NO_DEFAULT and f"`{default}`" not in rows[variable]:
            missing.append(f"{variable}: the default `{default}` is not in its row ({rows[variable]!r})")
    assert not missing, "docs/operations.md:\n" + "\n".join(missing)
