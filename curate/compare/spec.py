"""The comparison spec (`params/compare*.yaml`): pools x strategies x seeds on one run config.

A strategy is a name and a dict of parameter overrides applied on top of the run parameters, e.g.
`iterit-clean-gate: {selection: {strategy: iterit, mode: clean, mismatch_gate: on}}`; any parameter
of `params/default.yaml` may be overridden (an online policy is `{training: {online: {policy: adapt}}}`).
A pool is either a set of arguments of the demo generator (`curate.demo.pool.write_demo`), or your
own pool by `path` (any file or directory ingest reads) with its held-out sets by `heldout` (a file
or a directory of files, one set per file) or, without it, split off by `evaluation.holdout`.
Unknown keys fail fast with their dotted path, as for the run parameters.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator

from curate.config import Params, ParamsError, invalid, read_yaml
from curate.names import check_name


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no .inf or .nan budget or fraction


class PoolVariant(_S):
    """Arguments of the demo generator for one pool (see curate/demo/pool.py)."""

    size: int = Field(2000, gt=0)
    seed: int = 0
    noise: dict[str, float] | None = None  # noise kind -> fraction (None = the demo's default noise)
    skill_mix: dict[str, float] | None = None  # skill -> fraction of the clean rows (None = balanced)
    eval_per_skill: int = Field(100, gt=0)
    description: str = ""


class PoolFile(_S):
    """Your own pool: relative paths are relative to the project directory."""

    path: str = Field(min_length=1)  # the pool: a file or a directory of files in a format ingest reads
    heldout: str | None = None  # held-out sets (a file, or a directory: one set per file); None = evaluation.holdout split
    description: str = ""


def _pool_kind(data: Any) -> str:
    has_path = "path" in data if isinstance(data, dict) else isinstance(data, PoolFile)
    return "file" if has_path else "demo"


Pool = Annotated[Union[Annotated[PoolVariant, Tag("demo")], Annotated[PoolFile, Tag("file")]], Discriminator(_pool_kind)]


class CompareSpec(_S):
    name: str = "compare"  # names the workspace (.curate/compare/<name>) and the MLflow run
    experiment: str = "curate-compare"  # MLflow experiment of the comparison's parent run
    params: dict[str, Any] = {}  # overrides of the run parameters shared by every strategy (sizes)
    pools: dict[str, Pool] = Field(min_length=1)
    strategies: dict[str, dict[str, Any]] = Field(min_length=1)
    baseline: str = "random"  # the strategy every other one is compared with
    seeds: list[int] = Field(min_length=1)  # project.seed of the rounds: data order + random draws
    base_seed: int = 42  # project.seed of the pool stages and the base model, fixed per comparison
    budget: float = Field(0.1, gt=0)  # selection.ratio: K rows per round (fraction, or a count if > 1)
    rounds: int = Field(3, ge=1)  # selection.rounds
    match_full_steps: bool = True  # `full`: raise grad_accum so it takes the same optimizer steps
    tried_before: int = Field(0, ge=0)  # variants already tried on these pools before this spec (the verdict corrects for them)
    chosen_after_results: dict[str, str] = {}  # strategy -> what was changed after looking at earlier results
    # the statistics (docs/comparison-statistics.md): one contrast named before the run, the equivalence margin, the bootstrap
    primary: str | None = None  # the arm whose contrast with the baseline is the comparison's question (named before the run)
    equivalence_margin: float = Field(0.005, gt=0)  # nats: |difference| below this counts as no practical difference (TOST)
    bootstrap_samples: int = Field(10_000, ge=100)  # resamples of rows and seeds for the intervals and p-values
    bootstrap_seed: int = 0
    # compute-matched arms: name -> the strategy whose selection compute the arm spends on more baseline rows
    compute_matched: dict[str, str] = {}
    train_forward_factor: float = Field(3.0, gt=0)  # a training token costs this many forward tokens (forward + backward)
    evaluate_rounds: Literal["all", "final"] = "all"  # final: only the last round's checkpoint is evaluated (the verdict's)

    @field_validator("name", "experiment")
    @classmethod
    def _safe_name(cls, value: str, info: ValidationInfo) -> str:
        return check_name(value, info.field_name)  # a directory of the workspace, of MLflow's artifacts

    @field_validator("pools", "strategies", "compute_matched")
    @classmethod
    def _safe_keys(cls, value: dict, info: ValidationInfo) -> dict:
        for key in value:  # directories and file names of the workspace and the report
            check_name(key, {"pools": "pool", "strategies": "strategy", "compute_matched": "arm"}[info.field_name] + " name")
        return value

    @property
    def arms(self) -> list[str]:
        """Every arm of the comparison: the strategies, then the compute-matched arms."""
        return list(self.strategies) + list(self.compute_matched)

    def check(self) -> "CompareSpec":
        if self.baseline not in self.strategies:
            raise ParamsError(f"baseline {self.baseline!r} is not one of the strategies {list(self.strategies)}")
        unknown = sorted(set(self.chosen_after_results) - set(self.arms))
        if unknown:
            raise ParamsError(f"chosen_after_results names {unknown}, which are not strategies of this spec")
        if self.primary is not None and (self.primary not in self.arms or self.primary == self.baseline):
            raise ParamsError(f"primary {self.primary!r} must be one of the arms compared with the baseline: "
                              f"{[a for a in self.arms if a != self.baseline]}")
        for arm, strategy in self.compute_matched.items():
            if arm in self.strategies or strategy not in self.strategies or strategy == self.baseline:
                raise ParamsError(f"compute_matched: {arm!r} must be a new arm name and {strategy!r} one of the strategies "
                                  f"other than the baseline {self.baseline!r} (its selection compute goes to more "
                                  f"{self.baseline} rows)")
        for name in self.strategies:
            self.run_params(Params(), name, self.seeds[0])  # every override must be a valid parameter
        return self

    def run_params(self, base: Params, strategy: str, seed: int) -> Params:
        """The run parameters of one (strategy, seed): base + shared overrides + the strategy's + seed/budget/rounds."""
        data = merge(base.model_dump(mode="json"), self.params)
        data = merge(data, {"selection": {"ratio": self.budget, "rounds": self.rounds}})
        data = merge(data, self.strategies[strategy])
        data = merge(data, {"project": {"seed": seed}})
        return validated(data, f"strategy {strategy!r}")

    def pool_params(self, base: Params) -> Params:
        """Parameters of the pool stages and the base model: the shared overrides with base_seed."""
        data = merge(merge(base.model_dump(mode="json"), self.params), {"project": {"seed": self.base_seed}})
        return validated(data, "params")


def merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, recursively for nested dicts. A section that switches to another
    `policy` (training.online, a union of one model per policy) replaces the base's section whole:
    the base's fields belong to its own policy."""
    if "policy" in over and over["policy"] != base.get("policy"):
        base = {}
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def validated(data: dict, what: str) -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise invalid(f"compare spec, {what}: invalid parameters", e) from None


def load_spec(path: Path | str) -> CompareSpec:
    data = read_yaml(path, "comparison spec not found (see params/compare.yaml)")
    try:
        spec = CompareSpec.model_validate(data)
    except ValidationError as e:
        raise invalid(f"{path}: invalid comparison spec", e) from None
    return spec.check()
