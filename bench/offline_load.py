"""Benchmark: how fast `load_causal_lm` fails on a hub id that is not in the local cache, offline vs online.

The CLI runs with HF_HUB_OFFLINE=1, so an uncached hub id fails at the cache look-up at once. The
baseline is the same call with offline mode off: the hub client retries the request before giving up
(on a machine without network, ~50 s of name look-ups). Each mode runs in its own child process (the
hub reads HF_HUB_OFFLINE at import) with an empty HF_HOME; the clock covers the call only, after the
imports. The aim is the one the unit test used to hold as a wall-time bound: under 10 s offline.

Run: .venv/bin/python bench/offline_load.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from _setup import ROOT  # (offline env, repository root importable)

from _record import machine_info, record, utc_now  # noqa: E402

CHILD = """
import json, time
from curate.models.loading import ModelLoadError, load_causal_lm
import transformers  # imported before the clock starts
start = time.perf_counter()
try:
    load_causal_lm("no-such-org/no-such-model", device="cpu")
except ModelLoadError:
    print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def seconds_to_fail(offline: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory() as hf_home:
        env.update(HF_HOME=hf_home, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    offline, online = seconds_to_fail(True), seconds_to_fail(False)
    record(ROOT / "bench/results/offline_load.json", {
        "benchmark": "offline_load",
        "metric": "seconds until an uncached hub id fails",
        "value": round(offline, 3),
        "unit": "seconds",
        "baseline": "the same call with HF_HUB_OFFLINE unset (the hub client's retries; this machine has no network)",
        "baseline_value": round(online, 3),
        "ratio": round(online / offline, 1),
        "aim": {"seconds": 10},
        "command": ".venv/bin/python bench/offline_load.py",
        "date": utc_now(),
        "machine": machine_info(threads=1),
    })
    print(f"offline {offline:.2f} s, online {online:.2f} s, ratio {online / offline:.1f}")


if __name__ == "__main__":
    main()
