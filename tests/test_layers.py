"""The direction of the arrows (docs/architecture.md): ``app/`` is the domain and never
imports the delivery layer ``notifications/``, which reads ``app`` from above."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_under_app_imports_notifications():
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in imported_modules(path) if n.split(".")[0] == "notifications")
        for path in sorted((ROOT / "app").rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_check_sees_imports_inside_functions_too(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from notifications.dispatch import x\n    import notifications\n")
    assert {"notifications.dispatch", "notifications"} <= imported_modules(sample)


# What sits above the services (docs/architecture.md, "The layers"): the HTTP edge, the
# jobs and the commands. Everything else under app/ is below them and never reaches up,
# not even inside a function (a lazy import hides an arrow; it does not turn it round).
ABOVE_THE_SERVICES = {
    "app/__init__.py",
    "app/security.py",
    "app/consent.py",
    "app/idempotency.py",
    "app/jobs.py",
    "app/scheduler.py",
    "app/cli.py",
    "app/seed.py",
    "app/doctor.py",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_nothing_below_the_services_imports_them():
    below = [
        path
        for path in sorted((ROOT / "app").rglob("*.py"))
        if "services" not in path.relative_to(ROOT).parts and str(path.relative_to(ROOT)) not in ABOVE_THE_SERVICES
    ]
    assert below
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in imported_modules(path) if n.startswith("app.services"))
        for path in below
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (module -> modules it imports), each once."""
    found, done = [], set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            found.append(trail[trail.index(node) :])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, [*trail, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_the_services_import_each_other_without_a_cycle():
    """A service that needs another's function and is needed by it is one module split
    the wrong way (the party block, once read by orgs and claims from the party service
    that reads both, now sits below all three: app.services.party_blocks)."""
    paths = sorted((ROOT / "app" / "services").rglob("*.py"))
    names = {_module_name(path) for path in paths}
    graph = {
        _module_name(path): {
            name
            for imported in imported_modules(path)
            for name in (imported, imported.rsplit(".", 1)[0])
            if name in names and name != _module_name(path) and not _module_name(path).startswith(name + ".")
        }
        for path in paths
    }
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_through_a_lazy_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
