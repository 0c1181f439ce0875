"""The comparison spec (`params/compare*.yaml`): pool variants x strategies x seeds on one run config.

A strategy is a name and a dict of parameter overrides applied on top of the run parameters, e.g.
`iterit-clean-gate: {selection: {strategy: iterit, mode: clean, mismatch_gate: on}}`; any parameter
of `params/default.yaml` may be overridden (an online policy is `{training: {online: {policy: adapt}}}`).
A pool variant is a set of arguments of the demo generator (`curate.demo.pool.write_demo`).
Unknown keys fail fast with their dotted path, as for the run parameters.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from curate.config import Params, ParamsError, invalid, read_yaml


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolVariant(_S):
    """Arguments of the demo generator for one pool (see curate/demo/pool.py)."""

    size: int = Field(2000, gt=0)
    seed: int = 0
    noise: dict[str, float] | None = None  # noise kind -> fraction (None = the demo's default noise)
    skill_mix: dict[str, float] | None = None  # skill -> fraction of the clean rows (None = balanced)
    eval_per_skill: int = Field(100, gt=0)
    description: str = ""


class CompareSpec(_S):
    name: str = "compare"  # names the workspace (.curate/compare/<name>) and the MLflow run
    experiment: str = "curate-compare"  # MLflow experiment of the comparison's parent run
    params: dict[str, Any] = {}  # overrides of the run parameters shared by every strategy (sizes)
    pools: dict[str, PoolVariant]
    strategies: dict[str, dict[str, Any]] = Field(min_length=1)
    baseline: str = "random"  # the strategy every other one is compared with
    seeds: list[int] = Field(min_length=1)  # project.seed of the rounds: data order + random draws
    base_seed: int = 42  # project.seed of the pool stages and the base model, fixed per comparison
    budget: float = Field(0.1, gt=0)  # selection.ratio: K rows per round (fraction, or a count if > 1)
    rounds: int = Field(3, ge=1)  # selection.rounds
    match_full_steps: bool = True  # `full`: raise grad_accum so it takes the same optimizer steps

    def check(self) -> "CompareSpec":
        if self.baseline not in self.strategies:
            raise ParamsError(f"baseline {self.baseline!r} is not one of the strategies {list(self.strategies)}")
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
    """`over` on top of `base`, recursively for nested dicts."""
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
