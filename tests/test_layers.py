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
