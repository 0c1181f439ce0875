"""Trainer state on disk without pickle (docs/architecture.md §6: checkpoints inside and between rounds).

A `trainer_state/` directory holds
- `optimizer.safetensors`: every optimizer state tensor, keyed `<parameter name>/<state key>`;
- `optimizer.json`: the param groups (hyper-parameters and parameter names) and the parameter
  names that have state;
- `state.json`: counters, data-order position, RNG states and the partial step log.

Nothing is read back with pickle: tensors go through safetensors, everything else through JSON.
Optimizer state is matched to parameters by name, so a reordering of parameters cannot silently
attach moments to the wrong tensor.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TRAINER_STATE = "trainer_state"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
STATE_JSON = "state.json"
_PARAMS_KEYS = ("params", "param_names")


def derived_seed(*parts: int) -> int:
    """A 63-bit seed that is a function of `parts` only (seed, round, epoch/step, ...)."""
    blob = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


def save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Write the optimizer's state (built with named parameters) to `directory`."""
    sd = optimizer.state_dict()
    groups = sd["param_groups"]
    if any("param_names" not in g for g in groups):
        raise ValueError("optimizer must be built from named parameters (torch >= 2.6 param_names)")
    index_to_name = {i: n for g in groups for i, n in zip(g["params"], g["param_names"])}
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        name = index_to_name[index]
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(name, {})[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / OPTIMIZER_TENSORS))
    meta = {
        "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in groups],
        "with_state": sorted({index_to_name[i] for i in sd["state"]}),
        "scalars": scalars,
    }
    (directory / OPTIMIZER_JSON).write_text(json.dumps(meta, indent=1, sort_keys=True))


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Load state written by `save_optimizer` into an optimizer built with the same param groups."""
    meta = json.loads((directory / OPTIMIZER_JSON).read_text())
    tensors = load_file(str(directory / OPTIMIZER_TENSORS))
    current = optimizer.state_dict()["param_groups"]
    saved = meta["param_groups"]
    if [g.get("param_names") for g in current] != [g["param_names"] for g in saved]:
        raise ValueError(f"optimizer state in {directory} was saved for different parameters")
    name_to_index = {n: i for g in current for i, n in zip(g["params"], g["param_names"])}
    state: dict[int, dict[str, Any]] = {}
    for name in meta["with_state"]:
        entry = dict(meta["scalars"].get(name, {}))
        prefix = f"{name}/"
        entry.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        state[name_to_index[name]] = entry
    groups = []
    for cur, old in zip(current, saved):
        group = {k: (tuple(v) if isinstance(v, list) and k not in _PARAMS_KEYS else v) for k, v in old.items()}
        group["params"] = cur["params"]
        groups.append(group)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU and, when present, CUDA) as JSON-safe base64 strings."""
    out: dict[str, Any] = {"torch_cpu": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        out["torch_cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(_unb64(state["torch_cpu"]))
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["torch_cuda"]])


def write_state(directory: Path, state: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_JSON).write_text(json.dumps(state, indent=1, sort_keys=True))


def read_state(checkpoint: Path) -> dict[str, Any] | None:
    """`state.json` of a checkpoint's trainer state, or None for a bare model directory."""
    path = Path(checkpoint) / TRAINER_STATE / STATE_JSON
    return json.loads(path.read_text()) if path.is_file() else None
