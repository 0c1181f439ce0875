"""Optional evaluation of round checkpoints with lm-evaluation-harness (lm-eval 0.4.x) on standard
or local tasks, e.g. MMLU and GSM8K on a GPU as IterIT reports them (docs/iterit.md §10).

lm-eval is not part of the default install: `pip install -c constraints.txt -r requirements-lmeval.txt`.
Offline use: tasks come from lm-eval's own registry (their datasets must already be in the local
Hugging Face cache) or from `include_path`, a directory of task YAML files; `local_task` writes one
for a local JSONL file (the `json` dataset builder needs no network).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from curate.errors import UsageError

INSTALL_HINT = "lm-eval is not installed: pip install -c constraints.txt -r requirements-lmeval.txt"


def available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


def local_task(name: str, jsonl: Path, out_dir: Path, prompt: str = "{{instruction}}\n{{input}}\nAnswer:",
               target: str = " {{output}}", max_gen_toks: int = 32) -> Path:
    """Write `out_dir/<name>.yaml`: a generative exact-match task over a local JSONL (one row per line;
    the default templates read the demo's instruction / input / output fields)."""
    config = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(Path(jsonl).resolve())}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": prompt, "doc_to_target": target,
        "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": max_gen_toks},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": False, "ignore_punctuation": False}],
        "metadata": {"version": 1.0},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def evaluate_checkpoints(checkpoints: Mapping[str, Path], tasks: Sequence[str], include_path: Path | None = None,
                         limit: int | None = None, batch_size: int = 8, device: str | None = None) -> dict[str, Any]:
    """{checkpoint name: {task: {metric: value}}} for Hugging Face checkpoint directories."""
    if not available():
        raise UsageError(INSTALL_HINT)
    import lm_eval
    from lm_eval.tasks import TaskManager

    from curate.models.loading import adapter_base, is_adapter_dir

    if include_path is not None and not include_path.is_dir():
        raise UsageError(f"--lm-eval-include {include_path} is not a directory: name the directory of your task YAML files")
    manager = TaskManager(include_path=str(include_path)) if include_path else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks and not Path(t).is_file()]
    if unknown:
        raise UsageError(f"lm-eval knows no task {', '.join(unknown)}: name tasks, groups or tags it lists "
                         f"(`lm-eval ls tasks`), or a directory of your own with --lm-eval-include")
    out: dict[str, Any] = {}
    for name, path in checkpoints.items():
        # a LoRA checkpoint: lm-eval loads its base (digest checked first) with the adapter applied
        weights = {"pretrained": str(adapter_base(path)), "peft": str(path)} if is_adapter_dir(path) else {"pretrained": str(path)}
        result = lm_eval.simple_evaluate(
            model="hf", model_args={**weights, "dtype": "float32"}, tasks=list(tasks),
            task_manager=manager, limit=limit, batch_size=batch_size, device=device or "cpu",
            log_samples=False, random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
        )
        out[name] = {task: {k.split(",")[0]: float(v) for k, v in metrics.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool) and "stderr" not in k}
                     for task, metrics in result["results"].items()}
    return out
