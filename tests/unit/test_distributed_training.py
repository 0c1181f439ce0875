"""Multi-process training (`training.processes`, curate.training.distributed): real torchrun processes with
gloo on CPU. Two processes twice give the same bits; against one process the weights agree up to the
order of float sums; a round SIGKILLed inside resumes to the bits of an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from curate.config import AdaptOnline
from curate.training.distributed import train_round
from curate.training.state import read_state
from curate.training.trainer import Ranks, RoundRecipe
from test_training import EPS32, ROWS, config, make_base, weights

pytestmark = pytest.mark.slow  # each case starts torchrun processes


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_base(tmp_path_factory.mktemp("ddp-base") / "model")


@pytest.fixture(scope="module")
def base_with_dropout(tmp_path_factory) -> Path:
    """The result depends on every process's RNG, which checkpoints must carry. (Each process draws its
    own dropout masks, so with dropout N processes match one process in distribution only.)"""
    return make_base(tmp_path_factory.mktemp("ddp-dropout") / "model", attention_dropout=0.2)


# 4 micro-batches of 1 row per step: the two processes take 2 each, so the gradient sums change order
PLAN = dict(epochs=2, batch_size=1, grad_accum=4, save_every=0)


def _optimizer(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "trainer_state" / "optimizer.safetensors"))


@pytest.mark.parametrize("online", [None, AdaptOnline(policy="adapt")], ids=["uniform", "adapt"])
def test_two_processes_twice_same_bits_and_one_process_within_rounding(base, tmp_path, online):
    kw = config(**PLAN, **({"online": online} if online else {}))
    anchors = ROWS[:3] if online else ()
    runs = {name: train_round(kw, base, tmp_path / name / "r0", ROWS, processes=n, anchors=anchors)
            for name, n in (("one", 1), ("two", 2), ("two-again", 2))}
    w = {name: weights(tmp_path / name / "r0") for name in runs}

    assert all(torch.equal(w["two"][k], w["two-again"][k]) for k in w["two"])
    assert all(torch.equal(a, b) for a, b in zip(_optimizer(tmp_path / "two" / "r0").values(),
                                                  _optimizer(tmp_path / "two-again" / "r0").values()))
    assert runs["two"].log.to_pylist() == runs["two-again"].log.to_pylist()
    assert runs["two"].lineage.to_pylist() == runs["two-again"].lineage.to_pylist()

    # against one process: the same rows, weights and steps; the step's gradient is the same sum of micro-batch
    # gradients in another order, so each weight may round differently by a few ulps per optimizer step
    steps = runs["one"].steps
    assert runs["two"].steps == steps and steps >= 4
    for column in ("row_id", "step"):
        assert runs["two"].lineage.column(column).to_pylist() == runs["one"].lineage.column(column).to_pylist()
    for k in w["one"]:
        a, b = w["one"][k], w["two"][k]
        tol = 4 * steps * EPS32 * (1 + a.abs())
        assert bool(((a - b).abs() <= tol).all()), (k, float((a - b).abs().max()))
    one_loss, two_loss = runs["one"].log.column("loss").to_pylist(), runs["two"].log.column("loss").to_pylist()
    assert one_loss[0] == pytest.approx(two_loss[0], rel=8 * EPS32)  # before any update: the same losses, summed
    assert two_loss == pytest.approx(one_loss, rel=8 * steps * EPS32)
    row_weights = [runs[n].lineage.column("weight").to_pylist() for n in ("one", "two")]  # ADAPT's, or all 1
    assert row_weights[1] == pytest.approx(row_weights[0], rel=8 * steps * EPS32)
    assert (tmp_path / "two" / "r0").exists() and not list(tmp_path.glob("two/*.torchrun"))


class _World2(Ranks):
    world = 2


def test_the_process_count_is_in_the_resume_fingerprint(base, tmp_path):
    kw = config(save_every=2)
    prints = []
    for ranks in (Ranks(), _World2()):
        recipe = RoundRecipe(kw, base, tmp_path / "r0", ROWS, ranks=ranks)
        recipe._encode()
        prints.append(recipe.fingerprint())
    assert prints[0] != prints[1]


_TRAIN = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_training import ROWS, config
from curate.training.distributed import train_round
train_round(config(**{plan!r}), Path({base!r}), Path({out!r}), ROWS, processes=2)
"""


def test_sigkill_inside_a_two_process_round_then_resume_gives_the_same_bits(base_with_dropout, tmp_path):
    base = base_with_dropout
    # 45 steps: time to catch the first in-round checkpoint; 3 micro-batches per step: the processes draw
    # different amounts of randomness (2 and 1 dropout masks), so each must get its own RNG state back
    plan = {**PLAN, "epochs": 15, "grad_accum": 3, "save_every": 2}
    kw = config(**plan)
    reference = train_round(kw, base, tmp_path / "ref" / "r0", ROWS, processes=2)

    out = tmp_path / "run" / "r0"
    partial = out.parent / ".inprogress-r0"
    code = _TRAIN.format(tests=str(Path(__file__).parent), plan=plan, base=str(base), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher, torchrun and both training processes
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the round ended before it could be killed"
    killed_at = read_state(partial)["step_in_round"]
    assert 0 < killed_at < reference.steps and not out.exists()
    saved = read_state(partial)
    assert len(saved["rng"]["ranks"]) == 2  # every process's RNG state

    resumed = train_round(kw, base, out, ROWS, processes=2)
    assert resumed.log.column("step").to_pylist() == list(range(1, reference.steps + 1))
    # resumed, not started over: the steps before the kill keep the wall times they were logged with
    assert resumed.step_seconds[:killed_at] == [row["seconds"] for row in saved["log"]]
    assert resumed.log.column("loss").to_pylist() == reference.log.column("loss").to_pylist()
    w_ref, w_res = weights(tmp_path / "ref" / "r0"), weights(out)
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref)
    assert not partial.exists() and not list(out.parent.glob("*.torchrun"))


def test_a_failing_process_reports_torchrun_output(base, tmp_path):
    with pytest.raises(RuntimeError, match="torchrun with 2 processes failed"):
        train_round(config(**PLAN), tmp_path / "no-such-model", tmp_path / "r0", ROWS, processes=2)
