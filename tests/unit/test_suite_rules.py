"""The suite's own rules (tests/conftest.py), run on throwaway suites: a skip fails the session unless
allow-listed with a reason, and tests under integration/ are never selected by `make test-fast`."""
from pathlib import Path

import pytest

RULES = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()
MARKERS = "[pytest]\nmarkers =\n    slow: slow\n    integration: integration\n"


@pytest.fixture
def suite(pytester):
    pytester.makeini(MARKERS)
    pytester.makeconftest(RULES)
    pytester.makepyfile(
        test_a="""
        import pytest

        def test_runs():
            assert True

        def test_skipped():
            pytest.skip("no reason")

        @pytest.mark.xfail(reason="known")
        def test_xfailed():
            assert False
        """
    )
    return pytester


def test_an_unlisted_skip_or_xfail_fails_the_session(suite):
    result = suite.runpytest()
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skipped tests not in tests/skips_allowed.txt*", "test_a.py::test_skipped: *no reason*",
                                 "test_a.py::test_xfailed: xfail: known"])


def test_listed_skips_pass(suite):
    (suite.path / "skips_allowed.txt").write_text("# comment\ntest_a.py::test_skipped | needs a GPU\n"
                                                  "test_a.py::test_xfailed | upstream bug\n")
    assert suite.runpytest().ret == pytest.ExitCode.OK


def test_an_allow_list_line_without_a_reason_is_an_error(suite):
    (suite.path / "skips_allowed.txt").write_text("test_a.py::test_skipped\n")
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*expected '<test node id> | <reason*"])


def test_integration_tests_are_marked_by_their_directory(suite):
    (suite.path / "skips_allowed.txt").write_text("test_a.py | not under test here\n")
    suite.mkpydir("integration")
    (suite.path / "integration" / "test_server.py").write_text("def test_needs_a_server():\n    pass\n")
    result = suite.runpytest("-m", "not integration and not slow")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, deselected=1)
    assert result.ret == pytest.ExitCode.OK


def test_no_test_collected_is_a_failure(suite):
    assert suite.runpytest("-k", "no_such_test").ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_no_two_test_modules_share_a_basename():
    """Test directories are not packages: pytest imports each file by its basename, and a second file
    with the same name anywhere under tests/ stops the whole collection."""
    names = [p.name for p in (Path(__file__).resolve().parents[1]).rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
