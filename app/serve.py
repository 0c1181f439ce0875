"""`curate serve` and `curate server`: the nightly deployment on a Prefect server.

`serve` registers the flow `curate run` uses (flows/curate_run.py:curate_run) as the deployment
`curate-run/<schedule.deployment>` (default `curate-run/nightly`) with the cron of `schedule.cron` and a deployment concurrency limit of 1, and
runs it in this process (Prefect's runner) until stopped. A run that comes due while another is
running is cancelled (`schedule.overlap: cancel`, the default: the next night catches up, since every
finished stage is cached) or queued behind it (`enqueue`). Inside the run, the project lock also
keeps a manual `curate run` from writing at the same time. A deployment name is one project: serving
a second project under a name that already serves another one takes the name over, and says so.

`server` runs a local Prefect server bound to 127.0.0.1 with its database under `.curate/prefect/`.
Point `curate serve` (and the UI) at it, or at a remote server, with PREFECT_API_URL.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

FLOW = "curate-run"


def serve(project: Path, params_file: str, cron: str | None = None, overrides: list[str] = ()) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from curate.config import load_params
    from flows.curate_run import curate_run

    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit("error: PREFECT_API_URL is not set. Start a server (`curate server`) and export "
                         "PREFECT_API_URL=http://127.0.0.1:4200/api, or point it at your Prefect server.")
    _check_server(os.environ["PREFECT_API_URL"])
    p = load_params(project / params_file, overrides)
    strategy = {"cancel": ConcurrencyLimitStrategy.CANCEL_NEW, "enqueue": ConcurrencyLimitStrategy.ENQUEUE}[p.schedule.overlap]
    try:
        schedule = Cron(cron or p.schedule.cron, timezone=p.schedule.timezone)
    except ValueError as e:
        raise SystemExit(f"error: schedule.cron/--cron or schedule.timezone is invalid: {e}") from None
    _warn_if_taken(f"{FLOW}/{p.schedule.deployment}", str(project))
    os.chdir(project)  # the runner starts each flow run from the deployment's entrypoint, relative to here
    curate_run.serve(
        name=p.schedule.deployment,
        schedules=[schedule],
        parameters={"project": str(project), "params_file": params_file, **({"overrides": list(overrides)} if overrides else {})},
        global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=strategy),
        description="Nightly model-aware curation run (curate serve)",
        tags=["curate"],
        pause_on_shutdown=False,
    )


def _check_server(url: str) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    async def healthcheck():
        async with get_client() as client:
            return await client.api_healthcheck()  # the error, or None when the server answers

    error = asyncio.run(healthcheck())
    if error is not None:
        raise SystemExit(f"error: cannot reach the Prefect server at {url} ({type(error).__name__}: {error}). "
                         "Start one with `curate server`, or fix PREFECT_API_URL.")


def _warn_if_taken(name: str, project: str) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async def current_project():
        async with get_client() as client:
            try:
                return (await client.read_deployment_by_name(name)).parameters.get("project")
            except ObjectNotFound:
                return None

    other = asyncio.run(current_project())
    if other and other != project:
        print(f"warning: deployment {name} served project {other}; it now serves {project}. "
              "To serve both, give each its own schedule.deployment.", file=sys.stderr, flush=True)


def server(host: str = "127.0.0.1", port: int = 4200) -> None:
    """Replace this process with `prefect server start` (our environment: offline, telemetry off)."""
    prefect = Path(sys.executable).parent / "prefect"
    os.execv(str(prefect), [str(prefect), "server", "start", "--host", host, "--port", str(port)])
