"""The pipeline, declared once: every stage's inputs, the parameters it reads, its code and its output.

Everything else is derived from this table:
- a stage's cache key (tasks/caching.py): the values of exactly the declared parameter paths, the
  digests of its inputs and the digest of its declared code;
- the parameters each executor hands to a stage (`stage_params`): the Prefect flow
  (flows/curate_run.py), the one-stage commands of `dvc repro` (flows/stages.py) and the comparison
  runner all call the stages with `stage_params(p, name)`, nothing else;
- `dvc.yaml` (`curate dvc-yaml`; a test fails when the checked-in file differs).

A stage that reads a parameter it does not declare fails with a KeyError: the parameters it gets hold
only the declared paths. Pure data (no imports of the stages), so every layer may read it.
See docs/architecture.md §2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: tuple[str, ...]  # artifacts of earlier stages (stage names), or "raw" / "raw_eval" (the user's files)
    params: tuple[str, ...]  # dotted parameter paths (a section, a sub-section or a field) the stage reads
    code: tuple[str, ...]  # the library code its output depends on (files or packages)
    output: str | None  # where `data/` publishes it (a `dvc.yaml` out); None: not published
    module: str = ""  # the task module, when it is not tasks/<name>.py
    group: str = ""  # the `dvc.yaml` stage that runs it, when it is not a stage of its own (the rounds)
    when: tuple[str, ...] = ()  # parameters read only under some settings, handed over as arguments (see `note`)
    persist: bool = False  # dvc.yaml `persist`: the previous output stays (incremental stages)
    note: str = ""

    @property
    def task_module(self) -> str:
        return self.module or f"tasks/{self.name}.py"


CHAT = ("curate/models/chat.py", "curate/models/truncation.py", "curate/models/loading.py")
LOAD = ("base_model.dtype", "base_model.trust_remote_code", "base_model.chat_template")

STAGES: tuple[StageSpec, ...] = (
    StageSpec("ingest", inputs=("raw",), params=("ingest.max_bytes",),
              code=("curate/ingest", "curate/schema.py", "curate/artifacts.py"), output="data/ingest"),
    StageSpec("dedup", inputs=("ingest",), params=("dedup.exact", "dedup.near"),
              code=("curate/dedup", "curate/schema.py", "tasks/previous.py"), output="data/dedup", persist=True,
              note="dedup.semantic is the semdedup stage's: changing it does not re-run this one"),
    StageSpec("minhash_shard", inputs=("ingest", "dedup"), params=("dedup.exact", "dedup.near"),
              code=("curate/dedup", "curate/schema.py", "curate/artifacts.py", "tasks/previous.py"), output=None,
              module="tasks/dedup.py",
              note="the MinHash signatures of one contiguous group of the rows dedup will examine "
                   "(execution.shards > 1, dedup.near on); dedup looks them up"),
    StageSpec("embed", inputs=("dedup",), params=("embed",), code=("curate/embed", "curate/schema.py"),
              output="data/embed"),
    StageSpec("embed_shard", inputs=("dedup",), params=("embed",), code=("curate/embed", "curate/sharding.py"),
              output=None, module="tasks/embed.py",
              note="one contiguous group of the embed stage's batches (execution.shards > 1); embed merges them"),
    StageSpec("semdedup", inputs=("dedup", "embed"), params=("dedup.semantic",),
              code=("curate/dedup/semantic.py", "curate/dedup/exact.py", "curate/schema.py", "tasks/previous.py"),
              output="data/semdedup", persist=True),
    StageSpec("holdout", inputs=("semdedup", "raw_eval"), params=("evaluation.holdout", "decontamination"),
              code=("curate/evaluation/split.py", "curate/evaluation/decontaminate.py", "curate/evaluation/sets.py",
                    "curate/dedup", "curate/ingest"), output="data/holdout",
              note="no split (share 0) when raw.eval_dir holds held-out files; pool rows overlapping a held-out row "
                   "(or a decontamination.benchmarks row) are removed"),
    StageSpec("base_model", inputs=(), params=("base_model", "scoring.system_prompt", "project.seed"),
              code=("curate/models", "curate/demo"), output="data/models/base"),
    StageSpec("score", inputs=("holdout", "base_model"), params=("scoring",) + LOAD,
              code=("curate/scoring",) + CHAT + ("curate/schema.py",), output="data/score"),
    StageSpec("score_shard", inputs=("holdout", "base_model", "train"), params=LOAD,
              code=("curate/scoring",) + CHAT + ("curate/schema.py",), output=None, module="tasks/score.py",
              note="one contiguous group of the planned batches of the score stage or of a round's re-scoring "
                   "(execution.shards > 1): keyed by the plan's digest (which holds the scoring parameters) and the model's"),
    StageSpec("rescore", inputs=("holdout", "train", "select"), params=("scoring",) + LOAD,
              code=("curate/scoring",) + CHAT + ("curate/schema.py",), output="data/rounds",
              module="tasks/score.py", group="rounds"),
    StageSpec("ranking", inputs=("holdout", "base_model", "raw_eval"),
              params=("selection.strategy", "evaluation.anchor_rows", "scoring.system_prompt", "scoring.max_length",
                      "scoring.response_share", "scoring.batch_tokens") + LOAD,
              code=("curate/selection/rds.py", "curate/scoring/ifd.py", "curate/evaluation/sets.py",
                    "curate/evaluation/split.py", "curate/ingest") + CHAT,
              output="data/rounds", group="rounds",
              note="runs only for selection.strategy longest or rds, once before round 0"),
    StageSpec("select", inputs=("holdout", "score", "rescore", "select", "base_model", "ranking"),
              params=("selection", "project.seed"),
              code=("curate/selection", "curate/scoring/misalignment.py", "curate/models/loading.py"), output="data/rounds",
              group="rounds"),
    StageSpec("train", inputs=("holdout", "select", "base_model", "train", "raw_eval"),
              params=("training", "scoring.system_prompt", "project.seed", "base_model.chat_template"),
              code=("curate/training", "curate/selection") + CHAT + ("curate/scoring/ifd.py", "curate/ingest",
                                                                    "curate/evaluation/sets.py", "curate/evaluation/split.py"),
              output="data/rounds", group="rounds", when=("evaluation.anchor_rows",),
              note="evaluation.anchor_rows only when the online policy draws anchors from the held-out rows"),
    StageSpec("evaluate", inputs=("holdout", "raw_eval", "base_model", "train"),
              params=("evaluation.max_rows_per_skill", "evaluation.anchor_rows", "evaluation.batch_tokens",
                      "evaluation.exact_match", "scoring.system_prompt", "scoring.max_length", "scoring.response_share") + LOAD,
              code=("curate/evaluation", "curate/ingest") + CHAT + ("curate/scoring/ifd.py",), output="data/eval"),
    StageSpec("record", inputs=("ingest", "dedup", "embed", "semdedup", "holdout", "base_model", "score", "ranking", "select",
                                "train", "evaluate"),
              params=("*",), code=("curate/tracking",), output=None,
              note="every parameter: the MLflow run records them all (tracking and schedule included)"),
)
SPECS: dict[str, StageSpec] = {s.name: s for s in STAGES}
UNKEYED = ("execution",)  # where a run computes, never what: no stage gets these sections, record included


def spec(name: str) -> StageSpec:
    if name not in SPECS:
        raise KeyError(f"no stage {name!r} is declared in tasks/pipeline.py (declared: {', '.join(SPECS)})")
    return SPECS[name]


def pick(values: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The nested sub-dict of `values` holding exactly `paths` (dotted; "*" = every section but UNKEYED).
    An unknown path raises KeyError naming it."""
    if paths == ("*",):
        return {k: v for k, v in values.items() if k not in UNKEYED}
    out: dict[str, Any] = {}
    for path in paths:
        keys = path.split(".")
        src, dst = values, out
        for k in keys[:-1]:
            if not isinstance(src, dict) or k not in src:
                raise KeyError(f"unknown parameter path {path!r}")
            src, dst = src[k], dst.setdefault(k, {})
        if not isinstance(src, dict) or keys[-1] not in src:
            raise KeyError(f"unknown parameter path {path!r}")
        dst[keys[-1]] = src[keys[-1]]
    return out


def stage_params(p, name: str) -> dict[str, Any]:
    """What stage `name` gets as `params` (and hashes into its key): its declared paths of `p` (a Params)."""
    return pick(p.model_dump(mode="json"), spec(name).params)


def groups() -> dict[str, list[StageSpec]]:
    """`dvc.yaml` stages -> the declared stages each one runs (record is not a `dvc.yaml` stage)."""
    out: dict[str, list[StageSpec]] = {}
    for s in STAGES:
        if s.output is not None:
            out.setdefault(s.group or s.name, []).append(s)
    return out
