"""Environment hygiene: offline, no telemetry, every cache and temp dir inside the project state dir.

`configure(project_dir)` must run before prefect, mlflow, dvc, transformers or torch are imported;
the CLI calls it first thing. Values already set by the user win (so a user can point at a remote
Prefect server or MLflow tracking server), except the offline and telemetry switches, which are forced.
"""
from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_NAME = ".curate"

# Forced: no code path may reach the internet or phone home.
FORCED = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def state_dir(project_dir: Path) -> Path:
    return Path(project_dir).resolve() / STATE_DIR_NAME


def project_defaults(state: Path) -> dict[str, str]:
    """The variables `configure` sets for the project with state dir `state`, unless already set."""
    return {
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(state / "prefect-results"),
        # A fresh Prefect database takes 23-28 s to migrate here; the default timeout is 20 s.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        # OpenMP threads sleep instead of spinning while they wait: on a shared machine another busy
        # process made spinning torch threads ~9x slower (a 2-thread training loop: 42 s vs 4.6 s)
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HOME": str(state / "hf"),
        "TORCHINDUCTOR_CACHE_DIR": str(state / "torch"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "TMPDIR": str(state / "tmp"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def configure(project_dir: Path | str = ".") -> Path:
    """Set the process environment for an offline, self-contained run. Returns the state dir."""
    state = state_dir(Path(project_dir))
    for sub in ("prefect", "hf", "tmp", "prefect-results", "mlruns", "torch"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    os.environ.update(FORCED)
    for key, value in project_defaults(state).items():
        os.environ.setdefault(key, value)
    import tempfile

    tempfile.tempdir = None  # re-read TMPDIR
    return state


def mlflow_artifact_root(project_dir: Path | str = ".") -> str:
    return (state_dir(Path(project_dir)) / "mlruns").as_uri()
