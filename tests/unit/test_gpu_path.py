"""bench/gpu_path.py, the script prepared for a GPU machine that has only torch, transformers, peft and pyarrow:
its CPU dry run completes and passes its own checks, and it loads none of the packages that machine lacks."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ABSENT = {"prefect", "mlflow", "dvc", "pydantic", "pandas", "sklearn", "matplotlib", "sentence_transformers", "dask", "ray"}
# what the machine has: the four packages and their own dependencies (torch: jinja2, numpy; transformers: tokenizers)
PRESENT = {"torch", "transformers", "peft", "pyarrow", "numpy", "tokenizers", "jinja2", "safetensors"}
RUN = """
import json, runpy, sys
sys.argv = ["bench/gpu_path.py", "--dry-run", "--out", sys.argv[1]]
try:
    runpy.run_path("bench/gpu_path.py", run_name="__main__")
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_the_dry_run_passes_its_checks_and_loads_only_what_the_gpu_machine_has(tmp_path):
    out = tmp_path / "gpu_path.json"
    proc = subprocess.run([sys.executable, "-c", RUN, str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ran["code"] == 0
    loaded = {m.split(".")[0] for m in ran["modules"]}
    assert not loaded & ABSENT, loaded & ABSENT
    ours = [m for m in ran["modules"] if m.startswith("curate.")]
    for module in ours:  # the repository's modules it loads import only what the machine has (or the standard library)
        path = REPO / (module.replace(".", "/") + ".py")
        path = path if path.exists() else REPO / module.replace(".", "/") / "__init__.py"
        imported = set(re.findall(r"^\s*(?:from|import) ([A-Za-z_]\w*)", path.read_text(), re.M))
        third_party = imported - set(sys.stdlib_module_names) - {"curate", "__future__"}
        assert third_party <= PRESENT, (module, third_party - PRESENT)
    result = json.loads(out.read_text())
    assert result["ok"] and result["dry_run"] and not result["skipped"]
    parts = result["parts"]
    assert parts["tiny_scores_vs_cpu"]["fp32"]["max_rel_loss_diff"] <= parts["tiny_scores_vs_cpu"]["tolerance"]["fp32_rtol"]
    assert parts["tiny_lora_training"]["last_loss"] < parts["tiny_lora_training"]["first_loss"]
    big = parts["llama_1b_throughput"]
    assert big["scoring"]["tokens"] > 0 and big["plain_forward"]["tokens_per_s"] > 0
    assert big["lora_training"]["steps"] == 2 and big["lora_training"]["tokens_per_s"] > 0
