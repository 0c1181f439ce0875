"""Suite-wide rules, for every test file (present and future):

- a skipped or xfailed test fails the session unless `tests/skips_allowed.txt` lists it with a reason
  (a skip is a check that silently stopped running);
- every test under tests/integration/ carries the `integration` marker, so `make test-fast` never
  starts a Prefect server by accident;
- tests that took over SLOW_SECONDS without the `slow` marker are listed at the end, to be marked;
- Hypothesis keeps its example database under the project (`.hypothesis/`, gitignored), with no
  per-example deadline (the machine may be shared).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

pytest_plugins = ("pytester",)  # tests/unit/test_suite_rules.py runs these rules on throwaway suites

TESTS = Path(__file__).resolve().parent
ALLOW_LIST = TESTS / "skips_allowed.txt"
SLOW_SECONDS = 30.0

settings.register_profile("curate", database=DirectoryBasedExampleDatabase(str(TESTS.parent / ".hypothesis" / "examples")),
                          deadline=None, print_blob=True)
settings.load_profile("curate")


def read_allow_list(path: Path = ALLOW_LIST) -> dict[str, str]:
    """`<test node id> | <reason>` per line; `#` starts a comment. A line without a reason is an error."""
    allowed = {}
    if not path.exists():
        return allowed
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        node, _, reason = (x.strip() for x in line.partition("|"))
        if not node or not reason:
            raise pytest.UsageError(f"{path}:{n}: expected '<test node id> | <reason the skip is acceptable>', got {line!r}")
        allowed[node] = reason
    return allowed


def is_allowed(nodeid: str, allowed: dict[str, str]) -> bool:
    """An exact node id, or the id without its parameters, or the test file."""
    return any(key in allowed for key in (nodeid, nodeid.split("[", 1)[0], nodeid.split("::", 1)[0]))


class SuiteRules:
    def __init__(self, allowed: dict[str, str]):
        self.allowed = allowed
        self.skipped: dict[str, str] = {}  # node id -> skip/xfail reason, when not allowed
        self.slow: set[str] = set()
        self.seconds: dict[str, float] = {}

    @pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
    def pytest_collection_modifyitems(self, items):
        for item in items:
            if TESTS / "integration" in Path(str(item.fspath)).resolve().parents:
                item.add_marker(pytest.mark.integration)

    def _skip(self, nodeid: str, reason: str) -> None:
        if not is_allowed(nodeid, self.allowed):
            self.skipped[nodeid] = reason

    def pytest_collectreport(self, report):
        if report.skipped:  # a whole module skipped at import (e.g. importorskip at the top)
            self._skip(report.nodeid, str(report.longrepr))

    def pytest_runtest_logreport(self, report):
        # from the report, not the collected items: under pytest-xdist the workers collect, this process reports
        if "slow" in report.keywords:
            self.slow.add(report.nodeid)
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration
        if hasattr(report, "wasxfail"):
            self._skip(report.nodeid, f"xfail: {report.wasxfail}")
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self._skip(report.nodeid, reason)

    def unmarked_slow(self) -> list[tuple[str, float]]:
        return sorted(((n, s) for n, s in self.seconds.items() if s > SLOW_SECONDS and n not in self.slow),
                      key=lambda x: -x[1])

    def pytest_sessionfinish(self, session):
        if self.skipped and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if self.skipped:
            terminalreporter.section("skipped tests not in tests/skips_allowed.txt (the session fails)", red=True)
            for node, reason in sorted(self.skipped.items()):
                terminalreporter.line(f"{node}: {reason}")
            terminalreporter.line("Make them run, or list them in tests/skips_allowed.txt as '<node id> | <reason>'.")
        slow = self.unmarked_slow()
        if slow:
            terminalreporter.section(f"tests over {SLOW_SECONDS:.0f} s without @pytest.mark.slow", yellow=True)
            for node, seconds in slow:
                terminalreporter.line(f"{seconds:7.1f}s {node}")


def pytest_configure(config):
    config.pluginmanager.register(SuiteRules(read_allow_list()), "curate-suite-rules")
