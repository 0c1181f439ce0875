"""`curate`: the command line.

    curate demo-data                 write the synthetic demo pool + held-out sets, track them in data.dvc
    curate run [--params FILE]       run the curation flow (Prefect) end to end and print a summary
    curate resume [--params FILE]    resume a failed/killed run (same as run: the caches make it a resume)
    curate stage NAME                run one stage without Prefect (what dvc.yaml's stages call)
    curate audit checkpoint REF      rows that trained a checkpoint (MLflow run id or models:/ URI)
    curate audit row ROW_ID          checkpoints a row trained, or the stage that removed it and why
    curate audit verify [RUN]        re-hash every artifact a run references; exit 1 on any mismatch
    curate audit diff RUN_A RUN_B    rows that entered or left the training set between two runs, and why
    curate export [--run R] [--round N] [--format jsonl|parquet|hf] [--out DIR]
                                     the rows that trained a checkpoint, with a manifest of digests

The environment (offline, telemetry off, state under .curate/) is set before anything heavy is
imported; Prefect, MLflow and DVC are imported lazily by the commands that need them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from curate.env import configure

DEFAULT_PARAMS = "params/default.yaml"


def _project(args) -> Path:
    return Path(args.project).resolve()


def cmd_demo_data(args) -> int:
    from curate.config import load_params
    from curate.demo.pool import write_demo
    from curate.versioning import dvc

    project = _project(args)
    p = load_params(project / args.params)
    out = project / (args.out or p.raw.dir)
    counts = write_demo(out, size=args.size, seed=args.seed)
    dvc.ensure_repo(project, p.tracking.dvc_remote)
    dvc.add_raw(project, str(out.relative_to(project)))
    print(f"wrote demo pool to {out.relative_to(project)}: {json.dumps(counts)}")
    print("tracked in data.dvc")
    return 0


def _check_raw(project: Path, raw_dir: str) -> None:
    """Fail before any work when the raw pool is missing or holds a file in no supported format."""
    from curate.ingest.formats import discover

    raw = project / raw_dir
    if not raw.exists():
        raise SystemExit(f"error: raw pool {raw} does not exist. Run `curate demo-data` or put your data there.")
    discover(raw)  # raises UnsupportedFormatError naming the file and the formats expected


def cmd_run(args) -> int:
    from curate.config import ParamsError, load_params
    from curate.ingest import UnsupportedFormatError

    project = _project(args)
    try:
        p = load_params(project / args.params)
        _check_raw(project, p.raw.dir)
    except (ParamsError, UnsupportedFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from curate.env import state_dir
    from curate.lock import ProjectLocked, project_lock

    try:
        with project_lock(state_dir(project)):
            from curate.artifacts import remove_stale_temps

            # leftovers of a killed writer (never read: every artifact is renamed into place whole)
            for root in (state_dir(project) / "store", project / "data"):
                if root.exists():
                    remove_stale_temps(root)
            from curate.summary import render_summary
            from flows.curate_run import curate_run

            result = curate_run(project=str(project), params_file=args.params)
    except ProjectLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(render_summary(project, p, result))
    return 0


def cmd_stage(args) -> int:
    from flows.stages import run_stage

    project = _project(args)
    run_stage(str(project), args.name, args.params)
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

    result = audit.export(args.run, args.round, args.format, Path(args.out).resolve())
    print(json.dumps(result, indent=2, default=str) if args.json else audit.render(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="curate", description="Model-aware curation of instruction-tuning data.")
    ap.add_argument("--project", default=".", help="project directory (default: current directory)")
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="write the synthetic demo pool and held-out sets")
    d.add_argument("--size", type=int, default=5000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default=None, help="raw pool directory (default: raw.dir from params)")
    d.add_argument("--params", default=DEFAULT_PARAMS)
    d.set_defaults(fn=cmd_demo_data)

    r = sub.add_parser("run", help="run the curation flow end to end")
    r.add_argument("--params", default=DEFAULT_PARAMS)
    r.set_defaults(fn=cmd_run)

    rs = sub.add_parser("resume", help="resume a failed or killed run: finished stages come from the cache, "
                                       "the interrupted round continues from its in-round checkpoint")
    rs.add_argument("--params", default=DEFAULT_PARAMS, help="the params file of the run to resume")
    rs.set_defaults(fn=cmd_run)

    s = sub.add_parser("stage", help="run one stage without Prefect (called by dvc.yaml)")
    s.add_argument("name", choices=["ingest", "dedup", "embed", "semdedup", "base_model", "score", "rounds", "evaluate"])
    s.add_argument("--params", default=DEFAULT_PARAMS)
    s.set_defaults(fn=cmd_stage)

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
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_export)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.project)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
