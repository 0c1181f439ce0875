"""The mutation gate (`make mutate`): every mutant of tests/mutation/mutants.py must be caught.

    python tests/mutation/run.py                 # every mutant, against the test files it lists
    python tests/mutation/run.py NAME ...        # some of them
    python tests/mutation/run.py --check         # only: does every mutant still apply?
    python tests/mutation/run.py --full-suite    # each mutant against the whole fast unit suite (-x)

The working tree is never written: the runner copies the tree (the files git tracks or would track)
into a temporary directory once per job, applies one mutant at a time there, runs the fast unit tests
(`-m "not integration and not slow"`, stopping at the first failure) with that copy first on
PYTHONPATH and without bytecode files, and restores the file before the next mutant. An interrupted
run leaves the working tree as it was (the temporary copies are removed on exit). First the listed
test files run once unmutated: a suite that already fails would catch every mutant.

A mutant is `caught` when a test fails (the first failing test is named), `SURVIVED` when all pass,
`STALE` when its snippet no longer occurs exactly once in its file. Exit status 1 on any mutant not
caught, 2 when the unmutated tests fail.
"""
from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutants import MUTANTS, Mutant  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAST = "not integration and not slow"
TIMEOUT_S = 1800


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # caught | SURVIVED | STALE | ERROR
    detail: str  # the test that caught it, or why not
    seconds: float = 0.0


def stale_reason(m: Mutant, root: Path) -> str | None:
    """Why the mutant cannot be applied to the tree at `root` (None: it applies)."""
    path = root / m.file
    if not path.is_file():
        return f"{m.file} does not exist"
    n = path.read_text().count(m.original)
    return None if n == 1 else f"the original snippet occurs {n} times in {m.file} (expected once)"


def tree_files(root: Path) -> list[str]:
    """The files of the working tree: what git tracks or would track, else every file but caches."""
    proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          capture_output=True)
    if proc.returncode == 0 and (root / ".git").exists():
        return [f for f in proc.stdout.decode().split("\0") if f and (root / f).is_file()]
    return [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts]


def copy_tree(root: Path, files: list[str], dst: Path) -> Path:
    for rel in files:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dst


def pytest_run(tree: Path, targets: list[str]) -> tuple[int, str]:
    """Run the fast tests `targets` in `tree`, stopping at the first failure; (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", FAST, "--tb=line", "-rfE",
           *targets]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT_S} s"
    return proc.returncode, proc.stdout + proc.stderr


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1].split(" - ", 1)[0]
    return "(no failing test named)"


def run_mutant(m: Mutant, tree: Path, targets: list[str]) -> Outcome:
    """Apply `m` in the copy `tree`, run `targets`, restore the file whatever happens."""
    path = tree / m.file
    original = path.read_text()
    start = time.perf_counter()
    try:
        path.write_text(original.replace(m.original, m.replacement, 1))
        code, output = pytest_run(tree, targets)
    finally:
        path.write_text(original)
    seconds = time.perf_counter() - start
    if code == 0:
        return Outcome(m, "SURVIVED", "every test passed", seconds)
    if code in (1, 2):  # a failing test, or a collection error (an import the mutant broke)
        return Outcome(m, "caught", first_failure(output), seconds)
    return Outcome(m, "ERROR", f"pytest exit {code}: {output.strip().splitlines()[-1:] or ''}", seconds)


def _say(line: str) -> None:
    print(line, flush=True)


def gate(mutants: list[Mutant], root: Path = ROOT, full_suite: bool = False, jobs: int = 1,
         report=_say) -> list[Outcome]:
    """Every mutant's outcome (in list order). Raises RuntimeError when the unmutated tests fail."""
    outcomes: dict[str, Outcome] = {}
    live = []
    for m in mutants:
        reason = stale_reason(m, root)
        if reason:
            outcomes[m.name] = Outcome(m, "STALE", reason)
        else:
            live.append(m)
    targets = (lambda m: ["tests"]) if full_suite else (lambda m: list(m.tests))
    files = tree_files(root)
    with tempfile.TemporaryDirectory(prefix="curate-mutate-") as tmp:
        trees: queue.Queue[Path] = queue.Queue()
        for j in range(max(1, min(jobs, len(live)))):
            trees.put(copy_tree(root, files, Path(tmp) / f"tree{j}"))
        if live:
            baseline = sorted({t for m in live for t in targets(m)})
            tree = trees.get()
            code, output = pytest_run(tree, baseline)
            trees.put(tree)
            if code != 0:
                raise RuntimeError(f"the unmutated tests fail (exit {code}), so no mutant can be judged:\n{output[-3000:]}")

        def one(m: Mutant) -> Outcome:
            tree = trees.get()
            try:
                outcome = run_mutant(m, tree, targets(m))
            finally:
                trees.put(tree)
            report(f"{outcome.status:>8}  {m.name:<44} {outcome.seconds:6.1f}s  {outcome.detail}")
            return outcome

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for outcome in pool.map(one, live):
                outcomes[outcome.mutant.name] = outcome
    return [outcomes[m.name] for m in mutants]


def table(outcomes: list[Outcome]) -> str:
    lines = ["| mutant | file | what it breaks | caught by |", "|---|---|---|---|"]
    for o in outcomes:
        by = o.detail if o.status == "caught" else f"**{o.status}**: {o.detail}"
        lines.append(f"| {o.mutant.name} | {o.mutant.file} | {o.mutant.description} | {by} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="run only these mutants")
    ap.add_argument("--check", action="store_true", help="only check that every mutant still applies")
    ap.add_argument("--full-suite", action="store_true", help="each mutant against the whole fast unit suite")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at once, each in its own copy of the tree")
    ap.add_argument("--table", action="store_true", help="end with a Markdown table of the outcomes")
    args = ap.parse_args(argv)
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        print(f"error: no mutant named {', '.join(sorted(unknown))} in tests/mutation/mutants.py", file=sys.stderr)
        return 2
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.check:
        stale = [(m.name, r) for m in chosen if (r := stale_reason(m, ROOT))]
        for name, reason in stale:
            print(f"   STALE  {name}: {reason}")
        print(f"{len(chosen) - len(stale)} of {len(chosen)} mutants apply")
        return 1 if stale else 0
    try:
        outcomes = gate(chosen, full_suite=args.full_suite, jobs=args.jobs)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for o in outcomes:
        if o.status == "STALE":
            print(f"{o.status:>8}  {o.mutant.name:<44} {'':>7}  {o.detail}")
    bad = [o for o in outcomes if o.status != "caught"]
    if args.table:
        print(table(outcomes))
    print(f"mutation gate: {len(outcomes) - len(bad)} of {len(outcomes)} mutants caught"
          + (f"; not caught: {', '.join(o.mutant.name for o in bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
