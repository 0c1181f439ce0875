"""The real ShareGPT pool the real-data tests and benchmarks use: deterministic, damaged as asked."""
from curate.demo.sharegpt import write_sharegpt_pool
from curate.ingest import ingest_path


def test_sharegpt_pool_is_deterministic_and_damaged_lines_are_quarantined(tmp_path):
    counts = write_sharegpt_pool(tmp_path / "a", size=200, seed=3, damaged_share=0.05, heldout=20)
    write_sharegpt_pool(tmp_path / "b", size=200, seed=3, damaged_share=0.05, heldout=20)
    assert counts == {"conversations": 200, "damaged_lines": 10, "heldout": 20}
    for name in ("sharegpt.jsonl", "eval/sharegpt-heldout.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    result = ingest_path(tmp_path / "a")  # the eval/ sub-directory is not pool data
    assert result.stats["rows_in"] == 200
    reasons = result.quarantine.column("reason").to_pylist()
    assert sum(r.startswith("invalid_json") for r in reasons) == 10
    # real conversations: nearly all the undamaged ones are rows (a few are empty or malformed dumps)
    assert result.rows.num_rows >= 0.95 * 190
    held = ingest_path(tmp_path / "a" / "eval")
    assert set(held.rows.column("row_id").to_pylist()).isdisjoint(result.rows.column("row_id").to_pylist())
