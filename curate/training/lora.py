"""The model a round trains: full weights, or LoRA adapters (peft) on a frozen base; device and precision.

With `training.lora.enabled`, round 0 wraps the base model in fresh adapters and later rounds load
the previous round's adapter (trainable), so the adapter, the schedule and Adam's moments continue
across rounds. A round's checkpoint is then the adapter (`adapter_model.safetensors`,
`adapter_config.json`) plus `base.json`, the base model's path and digest; `load_causal_lm` merges
it into the base for scoring and evaluation. The base weights stay in float32 and frozen; bf16
precision is autocast of the forward passes (the trained weights and Adam state stay float32).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch
from transformers import AutoModelForCausalLM

from curate.artifacts import digest
from curate.config import LoraParams
from curate.models.loading import adapter_base, is_adapter_dir, read_base_ref, write_base_ref

CHECKPOINTING = {"use_reentrant": False}
_COMPARED = {"rank": "r", "alpha": "lora_alpha", "dropout": "lora_dropout"}


def resolve_device(name: str) -> torch.device:
    """`auto`: cuda when available, else cpu; `cuda` without a CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"training.device is {name!r} but torch sees no CUDA device; set training.device: cpu or auto")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the forward passes (None: plain float32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    raise ValueError(f"training.precision must be auto, fp32 or bf16, got {precision!r}")


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _lora_config(lora: LoraParams):
    from peft import LoraConfig

    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")


def _check_same_adapter(model, lora: LoraParams, checkpoint: Path) -> None:
    cfg = model.peft_config["default"]
    found = {k: getattr(cfg, attr) for k, attr in _COMPARED.items()}
    found["target_modules"] = sorted(cfg.target_modules)
    wanted = {k: getattr(lora, k) for k in _COMPARED} | {"target_modules": sorted(lora.target_modules)}
    if found != wanted:
        raise ValueError(f"the adapter in {checkpoint} has {found}, but training.lora asks for {wanted}; a run keeps "
                         f"one adapter shape across rounds (change training.lora back, or start a new run)")


def load_trainable(checkpoint: Path, lora: LoraParams, device: torch.device,
                   gradient_checkpointing: bool = False) -> tuple[Any, dict[str, str] | None]:
    """(model in float32 on `device`, base reference or None) to train from `checkpoint`.

    Full training: `checkpoint` is a model directory. LoRA: a model directory (the base: fresh
    adapters, initialised from the torch RNG) or an adapter directory (its adapter, trainable)."""
    checkpoint = Path(checkpoint)
    if not lora.enabled:
        if is_adapter_dir(checkpoint):
            raise ValueError(f"{checkpoint} is a LoRA adapter but training.lora.enabled is false; a run keeps one "
                             f"training mode across rounds")
        model, base_ref = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32), None
    elif is_adapter_dir(checkpoint):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(adapter_base(checkpoint), dtype=torch.float32)
        model = PeftModel.from_pretrained(base, checkpoint, is_trainable=True)
        _check_same_adapter(model, lora, checkpoint)
        base_ref = read_base_ref(checkpoint)
    else:
        from peft import get_peft_model

        base = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
        model = get_peft_model(base, _lora_config(lora))
        base_ref = {"path": str(checkpoint.resolve()), "digest": digest(checkpoint)}
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=CHECKPOINTING)
    return model.to(device), base_ref


def save_weights(model, directory: Path, base_ref: dict[str, str] | None) -> None:
    """The model's weights (full) or its adapter + base reference (LoRA) into `directory`."""
    model.save_pretrained(directory)
    if base_ref is not None:
        write_base_ref(directory, Path(base_ref["path"]), base_ref["digest"])


@contextlib.contextmanager
def without_checkpointing(model) -> Iterator[None]:
    """Gradient checkpointing off for a block (its recomputed forward would run capture hooks twice)."""
    on = bool(getattr(model, "is_activation_checkpointing", False))
    if on:
        model.activation_checkpointing_disable()
    try:
        yield
    finally:
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=CHECKPOINTING)
