"""No function of the project's code (app/, flows/, tasks/, curate/) is longer than 60 lines: a longer
one is split into named steps (docs/architecture.md, layout rules)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "flows", "tasks", "curate")
MAX_LINES = 60


def long_functions(root: Path = ROOT, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(file:line name, lines) of every function or method over `limit` lines, decorators excluded."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        found.append((f"{path.relative_to(root)}:{node.lineno} {node.name}", lines))
    return found


def test_no_function_is_over_60_lines():
    assert long_functions() == []


def test_the_measure_finds_a_long_function(tmp_path):
    (tmp_path / "curate").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "curate" / "long.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == [("curate/long.py:5 long", MAX_LINES + 1)]
