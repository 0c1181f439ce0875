"""The stage cache key: content digests + parameter slice + code version; never paths or run ids."""
from tasks.caching import Stage, code_version, stage_key

S = Stage("ingest", code=("curate/ingest",))


def test_key_ignores_paths_and_project():
    a = S.key({"project": "/a", "raw": {"path": "/a/data/raw", "digest": "d1"}, "params": {"x": 1}})
    b = S.key({"project": "/b", "raw": {"path": "/b/elsewhere", "digest": "d1"}, "params": {"x": 1}})
    assert a == b


def test_key_changes_with_content_and_params():
    base = {"raw": {"path": "p", "digest": "d1"}, "params": {"x": 1}}
    assert S.key(base) != S.key({**base, "raw": {"path": "p", "digest": "d2"}})
    assert S.key(base) != S.key({**base, "params": {"x": 2}})


def test_code_version_covers_helpers_not_only_the_task():
    assert code_version("curate/ingest") != code_version("curate/dedup")
    assert stage_key("s", ("curate/ingest",), {}) != stage_key("s", ("curate/dedup",), {})


def test_ignored_arguments_do_not_change_the_key():
    rec = Stage("record", code=("curate/tracking",), ignore=("flow_run_id",))
    assert rec.key({"flow_run_id": "a", "x": 1}) == rec.key({"flow_run_id": "b", "x": 1})
