"""The pipeline, declared once: every stage's inputs, how they are passed, the parameters it reads and
its output. The walker (flows/walk.py) executes this table in order; everything else derives from it:
- a stage's cache key (tasks/caching.py): the values of exactly the declared parameter paths, the
  digests of its inputs and the digest of its code (tasks/code.py: its task module's import graph);
- the parameters every executor hands a stage (`stage_params`): the Prefect flow, `curate stage X`
  (the commands of `dvc repro`) and `curate compare` are three walks of this table;
- `dvc.yaml` (`curate dvc-yaml`; a test fails when the checked-in file differs), the `data/` layout
  (`LAYOUT`), the stages `record` logs, and the stage modules the import contract keeps independent.

A stage's binding: its task (`task` in `tasks/<module>`), where each argument comes from (`args`:
argument -> source), and the optional hooks of its task module: `bind` (further arguments from those),
`step` (how it runs through an executor: shards, one call per model) and `check` (run after it: stops
the run with the cause and the fix, or returns warnings). A source is an earlier stage's name, a
sub-directory of its artifact (`holdout/pool`), `raw` / `raw_eval` (the user's files; `raw_eval` is
None without held-out files), `*` (every artifact of the walk so far), `run` (the flow run's identity)
or `a|b` (the first of them that is not None).

A stage that reads a parameter it does not declare fails with a KeyError: the parameters it gets hold
only the declared paths. Pure data (no imports of the stages), so every layer may read it.
See docs/architecture.md §2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: tuple[str, ...]  # artifacts of earlier stages (stage names), or "raw" / "raw_eval" (the user's files)
    params: tuple[str, ...]  # dotted parameter paths (a section, a sub-section or a field) the stage reads
    output: str | None  # where `data/` publishes it (a `dvc.yaml` out); None: not published
    module: str = ""  # the task module, when it is not tasks/<name>.py
    group: str = ""  # the `dvc.yaml` stage that runs it, when it is not a stage of its own (the rounds)
    when: tuple[str, ...] = ()  # parameters read only under some settings, handed over as arguments (see `note`)
    persist: bool = False  # dvc.yaml `persist`: the previous output stays (incremental stages)
    note: str = ""
    # the binding: what the walker calls and with what
    task: str = ""  # the task function in the task module (default: the stage's name)
    args: dict[str, str] = field(default_factory=dict)  # argument -> source (see the module docstring)
    bind: str = ""  # a function of the task module: (arguments) -> the task's arguments
    step: str = ""  # a function of the task module: (executor, arguments) -> result; default: one call
    check: str = ""  # a function of the task module: (params, value) -> warnings, run after the stage
    part_of: str = ""  # a shard stage: the stage whose step maps it (not walked on its own)
    logged: bool = False  # `record` logs its stats.json as a nested MLflow run

    @property
    def task_module(self) -> str:
        return self.module or f"tasks/{self.name}.py"

    @property
    def import_name(self) -> str:
        return self.task_module[: -len(".py")].replace("/", ".")

    @property
    def unit(self) -> str:
        """The walker's step (and `dvc.yaml` stage) that runs this stage: its group, or itself."""
        return self.group or self.part_of or self.name


LOAD = ("base_model.dtype", "base_model.trust_remote_code", "base_model.chat_template")
TINY = ("base_model.source", "base_model.vocab_size", "base_model.hidden_size", "base_model.num_layers",
        "base_model.num_heads", "base_model.intermediate_size", "base_model.max_positions", "base_model.pretrain")
HELDOUT = "raw_eval|holdout/heldout"  # the held-out sets: the user's files, else the rows the holdout stage split off

STAGES: tuple[StageSpec, ...] = (
    StageSpec("ingest", inputs=("raw",), params=("ingest.max_bytes",), output="data/ingest", logged=True,
              args={"raw": "raw"}, check="check"),
    StageSpec("dedup", inputs=("ingest",), params=("dedup.exact", "dedup.near"), output="data/dedup", persist=True,
              logged=True, args={"rows": "ingest"}, bind="with_previous", step="step",
              note="dedup.semantic is the semdedup stage's: changing it does not re-run this one"),
    StageSpec("minhash_shard", inputs=("ingest", "dedup"), params=("dedup.exact", "dedup.near"), output=None,
              module="tasks/dedup.py", part_of="dedup",
              note="the MinHash signatures of one contiguous group of the rows dedup will examine "
                   "(execution.shards > 1, dedup.near on); dedup looks them up"),
    StageSpec("embed", inputs=("dedup",), params=("embed",), output="data/embed", logged=True, args={"rows": "dedup"},
              step="step"),
    StageSpec("embed_shard", inputs=("dedup",), params=("embed",), output=None, module="tasks/embed.py", part_of="embed",
              note="one contiguous group of the embed stage's batches (execution.shards > 1); embed merges them"),
    StageSpec("semdedup", inputs=("dedup", "embed"), params=("dedup.semantic",), output="data/semdedup", persist=True,
              logged=True, args={"rows": "dedup", "embeddings": "embed"}, bind="with_previous"),
    StageSpec("holdout", inputs=("semdedup", "raw_eval"), params=("evaluation.holdout", "decontamination"),
              output="data/holdout", logged=True, args={"pool": "semdedup", "eval_files": "raw_eval"}, bind="eval_files",
              check="check",
              note="no split (share 0) when raw.eval_dir holds held-out files; pool rows overlapping a held-out row "
                   "(or a decontamination.benchmarks row) are removed"),
    StageSpec("base_model", inputs=(), params=TINY + ("scoring.system_prompt", "project.seed"),
              output="data/models/base",
              note="the tiny model's settings only: how the model is loaded (base_model.dtype, ...) is its readers'"),
    StageSpec("score", inputs=("holdout", "base_model"), params=("scoring",) + LOAD, output="data/score", logged=True,
              task="score_pool", args={"pool": "holdout/pool", "model": "base_model"}, step="step", check="check"),
    StageSpec("score_shard", inputs=("holdout", "base_model", "train"), params=LOAD, output=None, module="tasks/score.py",
              part_of="score",
              note="one contiguous group of the planned batches of the score stage or of a round's re-scoring "
                   "(execution.shards > 1): keyed by the plan's digest (which holds the scoring parameters) and the model's"),
    StageSpec("rescore", inputs=("holdout", "train", "select"), params=("scoring",) + LOAD, output="data/rounds",
              module="tasks/score.py", group="rounds"),
    StageSpec("ranking", inputs=("holdout", "base_model", "raw_eval"),
              params=("selection.strategy", "evaluation.anchor_rows", "scoring.system_prompt", "scoring.max_length",
                      "scoring.response_share", "scoring.batch_tokens") + LOAD,
              output="data/rounds", group="rounds",
              note="runs only for selection.strategy longest or rds, once before round 0"),
    StageSpec("select", inputs=("holdout", "score", "rescore", "select", "base_model", "ranking"),
              params=("selection", "project.seed"), output="data/rounds", group="rounds"),
    StageSpec("train", inputs=("holdout", "select", "base_model", "train", "raw_eval"),
              params=("training", "scoring.system_prompt", "project.seed", "base_model.chat_template"),
              output="data/rounds", group="rounds", when=("evaluation.anchor_rows",),
              note="evaluation.anchor_rows only when the online policy draws anchors from the held-out rows"),
    StageSpec("evaluate", inputs=("holdout", "raw_eval", "base_model", "train"),
              params=("evaluation.max_rows_per_skill", "evaluation.anchor_rows", "evaluation.batch_tokens",
                      "evaluation.exact_match", "scoring.system_prompt", "scoring.max_length", "scoring.response_share") + LOAD,
              output="data/eval", args={"heldout": HELDOUT, "model": "base_model", "checkpoints": "train"}, step="step"),
    StageSpec("record", inputs=("ingest", "dedup", "embed", "semdedup", "holdout", "base_model", "score", "ranking", "select",
                                "train", "evaluate"),
              params=("*",), output=None, args={"artifacts": "*", "run": "run"}, bind="arguments",
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


def units(specs=STAGES) -> dict[str, list[StageSpec]]:
    """The walker's steps in order -> the declared stages each one runs (a group's members, a stage and its shards)."""
    out: dict[str, list[StageSpec]] = {}
    for s in specs:
        out.setdefault(s.unit, []).append(s)
    return out


def groups() -> dict[str, list[StageSpec]]:
    """`dvc.yaml` stages -> the declared stages each one runs (record is not a `dvc.yaml` stage)."""
    out: dict[str, list[StageSpec]] = {}
    for s in STAGES:
        if s.output is not None:
            out.setdefault(s.group or s.name, []).append(s)
    return out


LAYOUT: dict[str, str] = {name: members[0].output for name, members in groups().items()}  # step -> its data/ path
