"""`curate gc`'s keep/remove decision (curate/gc.py), the per-run disk census (curate/disk_usage.py)
and the adapter's byte and name helpers (curate/gc_adapter.py)."""
from __future__ import annotations

import os

import pytest

from curate import gc
from curate.disk_usage import added_bytes, census
from curate.gc_adapter import freeable_bytes
from curate.published import store_name

T0 = 1_700_000_000.0  # start of the newest recorded run


def _refs(**over) -> gc.References:
    base = dict(kept_runs=frozenset({"run-b"}), store=frozenset({"train/kept"}), dvc=frozenset({"aa" * 16}),
                newest_run_start=T0)
    return gc.References(**{**base, **over})


def _entry(name: str, written: float = T0 - 3600, **over) -> gc.Candidate:
    return gc.Candidate(**{"area": gc.STORE, "name": name, "path": f"/s/{name}", "size": 10, "written": written, **over})


def _ids(runs: list[gc.ParentRun], keep: int) -> list[str]:
    return [r.run_id for r in gc.kept_runs(runs, keep)]


def test_kept_runs_count_finished_runs_and_keep_the_unfinished_newer_ones():
    runs = [gc.ParentRun("a1", "1", 100, "FINISHED"), gc.ParentRun("a2", "1", 300, "KILLED"),
            gc.ParentRun("a3", "1", 200, "FINISHED"), gc.ParentRun("b1", "2", 50, "FINISHED")]
    assert _ids(runs, 1) == ["a2", "a3", "b1"]  # a3: the latest finished run; a2: killed after it, resumable
    assert _ids(runs, 2) == ["a2", "a3", "a1", "b1"]
    assert len(gc.kept_runs(runs, 5)) == 4
    with pytest.raises(ValueError, match="at least 1"):
        gc.kept_runs(runs, 0)


def test_a_failed_latest_run_never_displaces_the_latest_finished_one():
    runs = [gc.ParentRun("old", "1", 100, "FINISHED"), gc.ParentRun("done", "1", 200, "FINISHED"),
            gc.ParentRun("failed", "1", 300, "FAILED"), gc.ParentRun("running", "1", 400, "RUNNING")]
    assert _ids(runs, 1) == ["running", "failed", "done"]
    # an unfinished run older than a finished one was resumed or replaced by it: not counted, not kept
    runs.append(gc.ParentRun("later", "1", 500, "FINISHED"))
    assert _ids(runs, 1) == ["later"]
    assert _ids(runs, 2) == ["later", "done"]
    # no finished run yet: every unfinished run is kept
    assert _ids([gc.ParentRun("k1", "1", 1, "KILLED"), gc.ParentRun("k2", "1", 2, "FAILED")], 1) == ["k2", "k1"]


def test_a_store_entry_goes_only_when_no_kept_run_records_it_and_nothing_else_may_need_it():
    refs = _refs()
    assert not gc.decide(_entry("train/kept"), refs).remove
    assert gc.decide(_entry("train/old"), refs).remove
    assert not gc.decide(_entry("train/old", in_workspace=True), refs).remove  # published in data/
    assert not gc.decide(_entry("train/new", written=T0 + 1), refs).remove  # a run not yet recorded
    assert not gc.decide(_entry("train/unknown-age", written=None), refs).remove
    assert not gc.decide(_entry("train/old"), _refs(newest_run_start=None)).remove  # nothing recorded yet


def test_a_killed_rounds_checkpoint_stays_for_the_resume_unless_a_later_run_was_recorded():
    newer = _entry("train/.inprogress-k.model", written=T0 + 60, area=gc.PARTIAL)
    older = _entry("train/k.model", written=T0 - 60, area=gc.PARTIAL)
    assert not gc.decide(newer, _refs()).remove
    assert gc.decide(older, _refs()).remove
    assert not gc.decide(older, _refs(newest_run_start=None)).remove


@pytest.mark.parametrize("area", [gc.DVC_CACHE, gc.DVC_REMOTE])
def test_dvc_objects_go_only_when_every_kept_reference_was_read(area):
    kept = gc.Candidate(area, "aa" * 16, "/c/aa", 5)
    other = gc.Candidate(area, "bb" * 16 + ".dir", "/c/bb", 5)
    assert not gc.decide(kept, _refs()).remove
    assert gc.decide(other, _refs()).remove
    assert not gc.decide(other, _refs(dvc=None)).remove  # some kept run's dvc.lock could not be read


def test_logged_models_go_with_their_run():
    assert not gc.decide(gc.Candidate(gc.MLFLOW_MODEL, "m-1", "/m/1", 7, run_id="run-b"), _refs()).remove
    assert gc.decide(gc.Candidate(gc.MLFLOW_MODEL, "m-2", "/m/2", 7, run_id="run-a"), _refs()).remove
    assert not gc.decide(gc.Candidate(gc.MLFLOW_MODEL, "m-3", "/m/3", 7, run_id=None), _refs()).remove


def test_plan_totals_and_dry_run_listing():
    plan = gc.plan([_entry("train/kept"), _entry("train/old", size=1500),
                    gc.Candidate(gc.DVC_CACHE, "cc" * 16, "/c/cc", 2500)], _refs())
    assert [d.candidate.name for d in plan.removals] == ["train/old", "cc" * 16]
    assert plan.bytes_to_free() == 4000 and plan.bytes_to_free(gc.STORE) == 1500
    text = gc.render(plan, [gc.ParentRun("run-b", "1", T0, "FINISHED")], dry_run=True)
    assert "would remove" in text and "train/old" in text and "4.0 kB" in text and "nothing was removed" in text
    assert "train/kept" not in text


def test_freeable_bytes_counts_an_inode_once_and_not_when_linked_from_outside(tmp_path):
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "a").write_bytes(b"x" * 100)
    os.link(entry / "a", entry / "a-again")  # both links inside: freed once
    (entry / "b").write_bytes(b"y" * 30)
    os.link(entry / "b", tmp_path / "published-b")  # a link outside survives the deletion
    assert freeable_bytes(entry) == 100


def test_census_counts_hard_links_once_and_added_bytes_only_new_inodes(tmp_path):
    store, cache = tmp_path / "store", tmp_path / "cache"
    store.mkdir()
    cache.mkdir()
    (store / "old").write_bytes(b"o" * 10)
    paths = {"store": store, "workspace": tmp_path / "none", "dvc_cache": cache, "dvc_remote": tmp_path / "none",
             "mlflow_artifacts": tmp_path / "none"}
    before = census(paths)
    (store / "new").write_bytes(b"n" * 1000)
    os.link(store / "new", cache / "linked")  # the same bytes in a second area: not counted again
    (cache / "copy").write_bytes(b"c" * 300)
    after = census(paths)
    assert added_bytes(before, after) == {"store": 1000, "workspace": 0, "dvc_cache": 300, "dvc_remote": 0,
                                          "mlflow_artifacts": 0}


def test_store_name_matches_recorded_paths_of_a_moved_project():
    assert store_name("/old/place/.curate/store/base_model/abc/model") == "base_model/abc"
    assert store_name("/new/.curate/store/train/def") == "train/def"
    assert store_name("/somewhere/else/model") is None


def test_published_manifest_names_the_entry_each_workspace_path_came_from(tmp_path):
    from curate import published

    store = tmp_path / ".curate" / "store"
    assert published.entries(tmp_path) is None  # before the first publish: gc falls back to inodes
    published.record(tmp_path, "data/rounds/round-0/train", store / "train" / "k0")
    published.record(tmp_path, "data/rounds/round-1/train", store / "train" / "k1")
    published.record(tmp_path, "data/score", store / "score" / "s0")
    published.record(tmp_path, "data/score", store / "score" / "s1")  # republished: the old entry is gone
    assert published.entries(tmp_path) == {"train/k0", "train/k1", "score/s1"}
    published.record(tmp_path, "data/rounds", store / "rounds" / "r")  # a parent path replaces its children
    assert published.entries(tmp_path) == {"rounds/r", "score/s1"}
    published.forget(tmp_path, "data/rounds")
    published.record(tmp_path, "data/models/base", tmp_path / "elsewhere")  # not a store path: nothing listed
    assert published.entries(tmp_path) == {"score/s1"}
    # `curate stage` reads an input from the very store path it was published from (a sub-path too)
    (store / "base_model" / "b" / "model").mkdir(parents=True)
    published.record(tmp_path, "data/models/base", store / "base_model" / "b" / "model")
    assert published.source(tmp_path, "data/models/base") == store / "base_model" / "b" / "model"
    assert published.entries(tmp_path) == {"score/s1", "base_model/b"}
    assert published.source(tmp_path, "data/score") is None  # its entry is gone (gc): the caller uses data/
