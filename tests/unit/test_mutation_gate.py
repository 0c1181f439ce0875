"""The mutation gate's runner (tests/mutation/run.py) on a throwaway tree: a caught mutant names the test
that caught it, a surviving or stale one fails the gate, and the tree it reads is never written."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

MUTATION = Path(__file__).resolve().parents[1] / "mutation"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"mutation_{name}", MUTATION / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


run = _load("run")
Mutant = run.Mutant

CALC = "def add(a, b):\n    return a + b\n\n\ndef neg(a):\n    return -a\n"
TEST = "from pkg.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
WHERE = ("import pkg.calc\nfrom pathlib import Path\n\n\ndef test_runs_in_a_copy():\n"
         "    assert Path(pkg.calc.__file__).resolve().parents[1] != Path({tree!r}).resolve()\n")
TESTS = ("tests/test_calc.py", "tests/test_where.py")


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "calc.py").write_text(CALC)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(TEST)
    (tmp_path / "tests" / "test_where.py").write_text(WHERE.format(tree=str(tmp_path)))  # fails in the tree itself
    return tmp_path


def test_caught_survived_and_stale_mutants(tree):
    mutants = [Mutant("sub", "pkg/calc.py", "return a + b", "return a - b", "adds by subtracting", TESTS),
               Mutant("neg", "pkg/calc.py", "return -a", "return a", "no negation (no test looks)", TESTS),
               Mutant("moved", "pkg/calc.py", "return a * b", "return a", "code that is not there", TESTS),
               Mutant("twice", "pkg/calc.py", "return", "yield", "a snippet that is not unique", TESTS)]
    outcomes = {o.mutant.name: o for o in run.gate(mutants, root=tree, report=lambda line: None)}
    assert {n: o.status for n, o in outcomes.items()} == {"sub": "caught", "neg": "SURVIVED", "moved": "STALE",
                                                          "twice": "STALE"}
    assert outcomes["sub"].detail == "tests/test_calc.py::test_add"
    assert "occurs 0 times" in outcomes["moved"].detail and "occurs 2 times" in outcomes["twice"].detail
    assert (tree / "pkg" / "calc.py").read_text() == CALC  # the tree the gate read is untouched
    assert "| sub | pkg/calc.py | adds by subtracting | tests/test_calc.py::test_add |" in run.table(list(outcomes.values()))


def test_an_unmutated_suite_that_fails_judges_nothing(tree):
    (tree / "tests" / "test_calc.py").write_text(TEST.replace("== 5", "== 6"))
    with pytest.raises(RuntimeError, match="the unmutated tests fail"):
        run.gate([Mutant("sub", "pkg/calc.py", "return a + b", "return a - b", "", TESTS)], root=tree,
                 report=lambda line: None)
