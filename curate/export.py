"""Export the exact rows that trained a checkpoint, in formats trainers read (TRL, LLaMA-Factory,
axolotl): one record per (round, row) in training order, with Alpaca fields, OpenAI-style
`messages`, and the lineage columns, plus a manifest of digests. On request, the checkpoint itself
as a full model (a LoRA adapter merged into its base)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import atomic_path, digest, write_json, write_parquet
from curate.errors import UsageError, require_directory
from curate.models.chat import conversation

FORMATS = ("jsonl", "parquet", "hf")


def training_records(selections: list[list[dict]], rows: dict[str, dict], system_prompt: str | None) -> list[dict[str, Any]]:
    """`selections[r]` = round r's selection rows (row_id, rank, reason, ...); `rows` = pool rows by row_id."""
    out = []
    for sel in selections:
        for s in sorted(sel, key=lambda x: x["rank"]):
            row = rows[s["row_id"]]
            out.append({
                "row_id": s["row_id"], "round": s["round"], "rank": s["rank"], "reason": s["reason"],
                "system": row.get("system") or "", "instruction": row["instruction"], "input": row.get("input") or "",
                "output": row["response"], "messages": conversation(row, system_prompt),
            })
    return out


def targets(out: Path, fmt: str, merged: bool) -> list[Path]:
    """The paths an export writes in `out`."""
    data = out / {"jsonl": "train.jsonl", "parquet": "train.parquet", "hf": "dataset"}[fmt]
    return [data, out / "manifest.json"] + ([out / "model"] if merged else [])


def check_out(out: Path, fmt: str, merged: bool, force: bool) -> None:
    """UsageError, before anything is computed, when `out` is not a directory or (without `force`) already holds
    a file the export would write."""
    require_directory(out, "--out")
    taken = [t.name for t in targets(out, fmt, merged) if t.exists()]
    if taken and not force:
        raise UsageError(f"{out} already holds {', '.join(taken)}: pass --force to overwrite them, or choose "
                         f"another --out")


def write_export(records: list[dict[str, Any]], out: Path, fmt: str, manifest: dict[str, Any]) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    target = targets(out, fmt, merged=False)[0]
    if fmt == "jsonl":
        with atomic_path(target) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records))
    elif fmt == "parquet":
        write_parquet(pa.Table.from_pylist(records), target)
    else:
        import datasets

        with atomic_path(target) as tmp:
            datasets.Dataset.from_list(records).save_to_disk(str(tmp))
    manifest = {**manifest, "format": fmt, "rows": len(records), "file": target.name, "digest": digest(target)}
    write_json(manifest, out / "manifest.json")
    return manifest


def write_merged_model(checkpoint: Path, out: Path) -> dict[str, Any]:
    """Write `checkpoint` (a model, or a LoRA adapter merged into its base) as a float32 model + tokenizer
    in `out/model`, without optimizer state. Returns its manifest entry."""
    from curate.models.loading import is_adapter_dir, load_causal_lm, read_base_ref

    model, tokenizer = load_causal_lm(checkpoint, dtype="float32", device="cpu")
    target = Path(out) / "model"
    with atomic_path(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    entry: dict[str, Any] = {"dir": target.name, "digest": digest(target), "checkpoint": str(checkpoint)}
    if is_adapter_dir(checkpoint):
        entry["base_model"] = read_base_ref(checkpoint)
    return entry


def read_pool(path: Path) -> dict[str, dict]:
    return {r["row_id"]: r for r in pq.read_table(path).to_pylist()}
