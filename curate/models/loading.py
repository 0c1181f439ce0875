"""Loading a causal LM + tokenizer from a local directory or a cached Hugging Face hub id.

Offline only: the CLI sets HF_HUB_OFFLINE=1, so a hub id that is not in the local cache fails at
once (instead of ~47 s of retries) with a message saying what to do.

A LoRA adapter directory (`adapter_config.json` + `base.json`, written by the trainer with
`training.lora.enabled`) loads as its base model with the adapter merged in; `base.json` records
the base model's path and content digest, and a base that changed since is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from curate.artifacts import digest


ADAPTER_CONFIG = "adapter_config.json"
BASE_REF = "base.json"


class ModelLoadError(RuntimeError):
    pass


def is_adapter_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / ADAPTER_CONFIG).is_file() and (path / BASE_REF).is_file()


def write_base_ref(adapter_dir: Path, base: Path, base_digest: str) -> None:
    """Record, inside an adapter directory, the base model it applies to."""
    (Path(adapter_dir) / BASE_REF).write_text(json.dumps({"path": str(Path(base).resolve()), "digest": base_digest}, indent=1))


def read_base_ref(adapter_dir: Path) -> dict:
    return json.loads((Path(adapter_dir) / BASE_REF).read_text())


def adapter_base(adapter_dir: str | Path) -> Path:
    """The base model directory of an adapter, after checking it still has the recorded digest."""
    ref = read_base_ref(Path(adapter_dir))
    base = Path(ref["path"])
    if not base.is_dir():
        raise ModelLoadError(f"the base model of adapter {adapter_dir} is gone: {base} does not exist. Restore it "
                             f"(`dvc pull`, or the same base_model.source) or re-run training from the current base")
    actual = digest(base)
    if actual != ref["digest"]:
        raise ModelLoadError(f"the base model of adapter {adapter_dir} changed: {base} has digest {actual[:16]}…, the "
                             f"adapter was trained on {ref['digest'][:16]}…. Restore that base model or re-run training")
    return base


def _merged_adapter(adapter_dir: Path, torch_dtype: torch.dtype, trust_remote_code: bool):
    """Base model + LoRA adapter, merged into plain weights (peft `merge_and_unload`)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(adapter_base(adapter_dir), dtype=torch_dtype,
                                                trust_remote_code=trust_remote_code)
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()


def _resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "fp32": torch.float32,
            "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[dtype]


def load_causal_lm(source: str | Path, dtype: str = "auto", trust_remote_code: bool = False,
                   device: str | None = None, chat_template: str | None = None):
    """(model in eval mode, tokenizer) from a local dir, hub id or adapter dir (merged); pad token defaults to EOS.
    `chat_template` (base_model.chat_template) replaces the tokenizer's; a tokenizer left without one is an error."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.models.chat import use_chat_template

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = _resolve_dtype(dtype, device)
    local = Path(source).expanduser()
    is_local = local.is_dir()
    if not is_local and (local.is_absolute() or str(source).startswith((".", "~")) or local.exists()):
        raise ModelLoadError(f"model directory not found: {source}")
    name = str(local) if is_local else str(source)
    try:
        tokenizer = use_chat_template(AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code),
                                      chat_template)
        if is_local and is_adapter_dir(local):
            model = _merged_adapter(local, torch_dtype, trust_remote_code)
        else:
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


def context_length(model_dir: str | Path) -> int | None:
    """The context length (config `max_position_embeddings`) of a model directory or of an adapter's base."""
    from transformers import AutoConfig

    path = Path(model_dir)
    if is_adapter_dir(path):
        path = Path(read_base_ref(path)["path"])
    return getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)


def parameter_count(model_dir: str | Path, trust_remote_code: bool = False) -> int:
    """Parameters of the model a directory (or an adapter's base) holds, from its config alone (no weights read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(model_dir)
    if is_adapter_dir(path):
        path = Path(read_base_ref(path)["path"])
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return sum(p.numel() for p in model.parameters())


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


def model_path(ref: dict) -> Path:
    """The Hugging Face model directory of a model artifact (a round's checkpoint keeps it under `model/`;
    a base model's Ref points at it directly)."""
    path = Path(ref["path"])
    return path / "model" if (path / "model").is_dir() else path
