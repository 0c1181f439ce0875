"""A training round in several processes: `train_round` runs it here (1 process) or under `torchrun`
(N processes, `training.processes`), and `main` is what each torchrun process runs.

- Launch: `python -m torch.distributed.run --standalone --nproc_per_node N -m curate.training.distributed JOB`
  as a subprocess of the calling task (a Dask worker is a daemon and cannot start multiprocessing
  children, a subprocess it can). JOB is a directory next to the round's output holding the round
  config, the rows and the anchors; the first process writes the round's log and lineage there.
- Backend: gloo on CPU, nccl on CUDA (each process on the GPU of its local rank).
- Threads: each process gets the caller's torch threads divided by N (at least 1) through
  `OMP_NUM_THREADS`, unless the caller set `OMP_NUM_THREADS` itself.
- The data-parallel step itself is `RoundRecipe._backward` with `TorchRanks`: micro-batches dealt
  round robin, one all-reduce (sum) of the flattened gradients per optimizer step.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from pydantic import TypeAdapter

from curate.config import LoraParams, OnlineParams
from curate.progress import Progress as ProgressLine
from curate.training.trainer import Progress, Ranks, RoundConfig, RoundRecipe, RoundResult

JOB_SUFFIX = ".torchrun"


class TorchRanks(Ranks):
    """The collectives of `Ranks` over torch.distributed (an initialised default process group)."""

    def __init__(self) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def barrier(self) -> None:
        dist.barrier()

    def sum_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Sum every parameter's gradient over the processes in one all-reduce. A parameter keeps no
        gradient (None, so AdamW leaves it alone) only when no process computed one, as in one process."""
        ref = params[0]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=ref.device)
        dist.all_reduce(flat)
        dist.all_reduce(has)
        offset = 0
        for p, any_grad in zip(params, has.tolist()):
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone() if any_grad else None
            offset += n

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def train_round(config: RoundConfig, checkpoint_in: Path, out_dir: Path, rows: Sequence[dict], *, processes: int = 1,
                row_weights: Sequence[float] | None = None, anchors: Sequence[dict] = (),
                progress: Progress | None = None) -> RoundResult:
    """One round (`RoundRecipe`) in this process, or in `processes` torchrun processes. In-round
    checkpoints, resume and the result are the same either way; the weights agree with one process's
    up to the order of float sums (the world size is part of the resume fingerprint)."""
    if processes == 1:
        return RoundRecipe(config, checkpoint_in, out_dir, rows, row_weights=row_weights, anchors=anchors,
                           progress=progress).run()
    job = Path(out_dir).parent / f"{Path(out_dir).name}{JOB_SUFFIX}"
    if job.exists():
        shutil.rmtree(job)
    job.mkdir(parents=True)
    _write_job(job, config, Path(checkpoint_in), Path(out_dir), rows, row_weights, anchors)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", "curate.training.distributed", str(job)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, torch.get_num_threads() // processes)))
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:  # progress lines as they come
            sys.stderr.write(line)
            tail.append(line)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun with {processes} processes failed (exit {proc.returncode}); its output ends:\n"
                           + "".join(tail))
    result = _read_result(job, Path(out_dir))
    shutil.rmtree(job)
    return result


def _config_dict(config: RoundConfig) -> dict[str, Any]:
    data = asdict(config)
    data["online"], data["lora"] = config.online.model_dump(), config.lora.model_dump()
    return data


def _config_of(data: dict[str, Any]) -> RoundConfig:
    return RoundConfig(**{**data, "online": TypeAdapter(OnlineParams).validate_python(data["online"]),
                          "lora": LoraParams.model_validate(data["lora"])})


def _write_job(job: Path, config: RoundConfig, checkpoint_in: Path, out_dir: Path, rows: Sequence[dict],
               row_weights: Sequence[float] | None, anchors: Sequence[dict]) -> None:
    (job / "job.json").write_text(json.dumps({
        "config": _config_dict(config), "checkpoint_in": str(checkpoint_in), "out_dir": str(out_dir),
        "row_weights": None if row_weights is None else [float(w) for w in row_weights]}))
    (job / "rows.json").write_text(json.dumps(list(rows)))
    (job / "anchors.json").write_text(json.dumps(list(anchors)))


def _read_result(job: Path, out_dir: Path) -> RoundResult:
    meta = json.loads((job / "result.json").read_text())
    log, lineage = pq.read_table(job / "log.parquet"), pq.read_table(job / "lineage.parquet")
    return RoundResult(out_dir, meta["steps"], meta["final_loss"], log, lineage, meta["trained_rows"],
                       meta["skipped_rows"], meta["truncated_rows"], meta["step_seconds"])


def main(job: Path) -> None:
    """One torchrun process: join the group, train the round with `TorchRanks`, the first process writes the result."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        spec = json.loads((job / "job.json").read_text())
        ranks = TorchRanks()
        bar = ProgressLine(f"train round {spec['config']['round_index']} ({ranks.world} processes): steps", "tokens")
        recipe = RoundRecipe(_config_of(spec["config"]), Path(spec["checkpoint_in"]), Path(spec["out_dir"]),
                             json.loads((job / "rows.json").read_text()), row_weights=spec["row_weights"],
                             anchors=json.loads((job / "anchors.json").read_text()), ranks=ranks,
                             progress=lambda step, steps, loss, tps: bar(step, steps, rate=tps, loss=loss))
        result = recipe.run()
        if ranks.writer:
            pq.write_table(result.log, job / "log.parquet")
            pq.write_table(result.lineage, job / "lineage.parquet")
            (job / "result.json").write_text(json.dumps({
                "steps": result.steps, "final_loss": result.final_loss, "trained_rows": result.trained_rows,
                "skipped_rows": result.skipped_rows, "truncated_rows": result.truncated_rows,
                "step_seconds": result.step_seconds}))
        ranks.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
