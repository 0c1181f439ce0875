"""Content-keyed stage caching (docs/architecture.md §4).

A stage's cache key = stage name + the content digests of its input artifacts + the values of the
parameter paths it declares (tasks/pipeline.py) + a code version: the digest of the files its task module
imports, transitively, inside curate/ and tasks/ (tasks/code.py; Prefect's TASK_SOURCE alone hashes only
the task's own lines and misses helpers; INPUTS hashes a Path by its name; the default policy includes
the run id). The same key names the stage's output directory in the
content store `.curate/store/<stage>/<key>/`, which is written once, atomically, and never modified,
so a cache hit always points at the right bytes. `flows/` publish store entries into `data/` for DVC.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prefect import task
from prefect.serializers import JSONSerializer

from curate.artifacts import Ref, text_digest
from curate.env import state_dir
from curate.seal import checked_ref
from tasks.code import stage_code
from tasks.pipeline import StageSpec, pick, spec

ROOT = Path(__file__).resolve().parent.parent
REGISTRY: dict[str, "Stage"] = {}  # task name -> its Stage (filled when a task module is imported)


def is_ref(x: Any) -> bool:
    return isinstance(x, dict) and set(x) == {"path", "digest"}


def _keyable(x: Any) -> Any:
    """Replace artifact references by their digests: a key must not depend on where a file lives."""
    if is_ref(x):
        return {"digest": x["digest"]}
    if isinstance(x, Ref):
        return {"digest": x.digest}
    if isinstance(x, dict):
        return {k: _keyable(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_keyable(v) for v in x]
    if isinstance(x, Path):
        raise TypeError("pass artifacts as Ref dicts (path + digest), not Paths: a Path has no content identity")
    return x


@functools.lru_cache(maxsize=None)
def code_version(*modules: str) -> str:
    """Digest of every .py file under the given paths (relative to the project code root).

    A path that does not exist raises: skipping it would leave the cache blind to edits of the code
    it meant to cover.
    """
    h = hashlib.sha256()
    for mod in modules:
        base = ROOT / mod
        if not base.exists():
            raise FileNotFoundError(f"stage code path {mod!r} does not exist under {ROOT}: fix the Stage's code list")
        files = [base] if base.is_file() else sorted(base.rglob("*.py"))
        if not files:
            raise FileNotFoundError(f"stage code path {mod!r} holds no .py file: fix the Stage's code list")
        for f in files:
            h.update(f.relative_to(ROOT).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def stage_key(stage: str, code: tuple[str, ...], arguments: dict[str, Any]) -> str:
    return text_digest(stage, code_version(*code), _keyable(arguments))[:24]


def store_dir(project: Path, stage: str, key: str) -> Path:
    return state_dir(project) / "store" / stage / key


TASK_PIDS = "CURATE_TASK_PIDS"  # tests: a file where computing tasks note "<stage> <process id>" (where they ran)


def note_pid(stage: str) -> None:
    """With CURATE_TASK_PIDS set, append this stage's name and process id to that file."""
    if os.environ.get(TASK_PIDS):
        with open(os.environ[TASK_PIDS], "a") as f:
            f.write(f"{stage} {os.getpid()}\n")


@dataclass(frozen=True)
class Stage:
    """A pipeline stage as declared in tasks/pipeline.py, with its cache key and its Prefect task.

    Usage in a task module::

        STAGE = Stage("ingest")

        @STAGE.task()
        def ingest(project: str, raw: dict, params: dict) -> dict:
            out = STAGE.out(project, locals())   # called first thing: locals() == the arguments

    Arguments must be JSON-able (artifact Ref dicts, `stage_params(p, name)`); `project` (the project
    directory) is excluded from the key. The result must be JSON-able (usually a Ref dict).
    """

    name: str
    ignore: tuple[str, ...] = ()  # arguments that do not change the output (e.g. the flow-run id)

    @property
    def spec(self) -> StageSpec:
        return spec(self.name)

    @property
    def all_code(self) -> tuple[str, ...]:
        """The files its key hashes: its task module's import graph (the same list is its `dvc.yaml` deps)."""
        return stage_code(self.spec.task_module)

    def key(self, arguments: dict[str, Any]) -> str:
        args = {k: v for k, v in arguments.items() if k != "project" and k not in self.ignore}
        if "params" in args and pick(args["params"], self.spec.params) != args["params"]:
            raise ValueError(f"stage {self.name!r} was handed parameters it does not declare: call it with "
                             f"stage_params(p, {self.name!r}) (declared: {', '.join(self.spec.params)})")
        return stage_key(self.name, self.all_code, args)

    def out(self, project: str | Path, arguments: dict[str, Any]) -> Path:
        return store_dir(Path(project), self.name, self.key(arguments))

    def ref(self, path: Path) -> dict:
        """The Ref dict of this stage's store entry `path` (or a path inside it), its bytes checked against the
        entry's seal: a task returns it, so a stored entry whose bytes changed is never handed on."""
        return checked_ref(path).to_dict()

    def is_stored(self, arguments: dict[str, Any]) -> bool:
        """Is this call's output already in the content store (so calling it computes nothing)?"""
        return self.out(arguments["project"], arguments).exists()

    def task(self, **task_kwargs) -> Callable:
        def cache_key(_context, parameters: dict[str, Any]) -> str:
            # the store key holds no project (two projects share keys); Prefect's cached result names this
            # project's paths and MLflow runs, so its key holds the project's state dir too
            return f"{self.name}-{text_digest(str(state_dir(Path(parameters['project']))))[:16]}-{self.key(parameters)}"

        def decorate(fn: Callable) -> Callable:
            REGISTRY[self.name] = self
            return task(
                name=self.name,
                cache_key_fn=cache_key,
                persist_result=True,
                result_serializer=JSONSerializer(),
                **task_kwargs,
            )(fn)

        return decorate
