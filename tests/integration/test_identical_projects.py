"""Content digests are content: two fresh projects given the same data and parameters publish
byte-identical artifacts from ingest to the last round, except the files that record timings, which
are listed here and are left out of every digest (curate/artifacts.py `TIMINGS`)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from curate.artifacts import TIMINGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_projects_publish_identical_bytes(make_project):
    runs, published = [], []
    for name in ("a", "b"):
        project = make_project(name)
        project.set_params({"selection": {"rounds": 2}})
        project.curate("demo-data", "--size", "200")
        runs.append(json.loads(project.curate("run", "--json").stdout))
        published.append(_files(project.root / "data"))

    a, b = published
    assert a.keys() == b.keys()
    timing = sorted(k for k in a if Path(k).name == TIMINGS)
    assert timing, "the stages record their timings in timings.json files"
    differ = sorted(k for k in a if a[k] != b[k] and Path(k).name != TIMINGS)
    assert differ == [], differ
    # every stage output (timings left out of the digests) and every checkpoint has the same digest
    digests = [{(c["stage"], c["round"]): c["digest"] for c in run["stages"] if c["stage"] != "record"} for run in runs]
    assert digests[0] == digests[1]
    assert runs[0]["artifacts"] == runs[1]["artifacts"]
