"""Loading a causal LM + tokenizer from a local directory or a cached Hugging Face hub id.

Offline only: the CLI sets HF_HUB_OFFLINE=1, so a hub id that is not in the local cache fails at
once (instead of ~47 s of retries, stack notes §6.7) with a message saying what to do.
"""
from __future__ import annotations

from pathlib import Path

import torch

from curate.artifacts import digest


class ModelLoadError(RuntimeError):
    pass


def _resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "fp32": torch.float32,
            "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[dtype]


def load_causal_lm(source: str | Path, dtype: str = "auto", trust_remote_code: bool = False,
                   device: str | None = None):
    """(model in eval mode, tokenizer) from a local dir or hub id; pad token defaults to EOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = _resolve_dtype(dtype, device)
    local = Path(source).expanduser()
    is_local = local.is_dir()
    if not is_local and (local.is_absolute() or str(source).startswith((".", "~")) or local.exists()):
        raise ModelLoadError(f"model directory not found: {source}")
    name = str(local) if is_local else str(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    except OSError as e:
        if is_local:
            raise ModelLoadError(f"could not load a causal LM from {name}: {e}") from e
        raise ModelLoadError(
            f"model '{name}' is not a local directory and is not in the Hugging Face cache "
            f"(offline mode). Download it on a connected machine (e.g. `hf download {name}`) into "
            f"HF_HOME, or set base_model.source to a local directory. Cause: {e}"
        ) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.to(device)
    model.eval()
    return model, tokenizer


def local_model_dir(source: str | Path) -> Path:
    """The directory holding `source`: itself if local, else its snapshot in the HF cache."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(source), local_files_only=True))
    except Exception as e:  # huggingface_hub raises several unrelated types for "not cached"
        raise ModelLoadError(f"model '{source}' is neither a local directory nor cached: {e}") from e


def model_digest(source: str | Path) -> str:
    """Content digest of a model directory (weights, config and tokenizer files), local or cached."""
    return digest(local_model_dir(source))
