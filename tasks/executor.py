"""How a stage is executed: the interface every walk of the pipeline goes through (flows/walk.py).

`call(task, **arguments)` runs one stage; `map(task, mapped, **constant)` runs it once per position of the
`mapped` argument lists; `shards` is how many groups a stage that can split its work splits it into. The
Prefect executor (flows/execution.py) runs tasks as cached Prefect task runs, in this process or on Dask or
Ray workers; `Direct` runs the plain functions one after the other (`curate stage`, under `dvc repro`);
the comparison runner's `Timed` (app/compare.py) is a `Direct` that notes wall times. All three write the
same content-keyed store entries.
"""
from __future__ import annotations

from typing import Any, Protocol


class Executor(Protocol):
    shards: int

    def call(self, task, note_round: int | None = None, **arguments) -> Any: ...

    def map(self, task, mapped: dict[str, list], note_round: int | None = None, **constant) -> list: ...


def calls(mapped: dict[str, list], constant: dict[str, Any]) -> list[dict[str, Any]]:
    """The arguments of each call of a map: `constant` plus one position of every `mapped` list."""
    return [{**constant, **dict(zip(mapped, values))} for values in zip(*mapped.values())]


class Direct:
    """The stage functions themselves (`task.fn`), one after the other, in one shard."""

    shards = 1

    def call(self, task, note_round: int | None = None, **arguments) -> Any:
        return task.fn(**arguments)

    def map(self, task, mapped: dict[str, list], note_round: int | None = None, **constant) -> list:
        return [self.call(task, note_round, **kw) for kw in calls(mapped, constant)]
