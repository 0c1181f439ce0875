"""Round trainer: schedule, response-only loss, state carried across rounds, resume inside a round."""
from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from curate.models.tiny_llama import build_tiny_llama
from curate.models.tokenizer import train_tokenizer
from curate.training import RoundConfig, RoundRecipe, lr_at, steps_per_round, warmup_steps_for
from curate.training import state as state_mod
from curate.training import trainer as trainer_mod
from curate.training.state import load_optimizer, read_state, save_optimizer
from curate.training.trainer import build_examples, micro_batch_loss

SYSTEM = "You are terse."
EPS32 = torch.finfo(torch.float32).eps  # float32 machine epsilon: the unit of every tolerance below
ROWS = [
    {"instruction": f"Add {a} and {b}.", "input": "", "response": f"The sum is {a + b}.", "system": "", "context": []}
    for a in range(3)
    for b in range(3)
]


def make_base(path: Path, attention_dropout: float = 0.0) -> Path:
    corpus = [f"{r['instruction']} {r['response']}" for r in ROWS] * 4 + [SYSTEM] * 4
    tok = train_tokenizer(corpus, vocab_size=300)
    model = build_tiny_llama(
        len(tok), hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
        pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=3,
    )
    model.config.attention_dropout = attention_dropout
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path



@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_base(tmp_path_factory.mktemp("base") / "model")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def config(**over) -> RoundConfig:
    kw = dict(
        system_prompt=SYSTEM, max_length=64, batch_size=2, grad_accum=2, lr=5e-3, weight_decay=0.01,
        warmup_steps=2, total_steps=30, schedule="cosine", epochs=2, seed=7, round_index=0,
    )
    kw.update(over)
    return RoundConfig(**kw)


# --- schedule ---------------------------------------------------------------------------------

def test_schedule_values():
    assert lr_at(0, 110, 10, 1.0) == 0.0
    assert lr_at(5, 110, 10, 1.0) == pytest.approx(0.5)
    assert lr_at(10, 110, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(60, 110, 10, 1.0) == pytest.approx(0.5)  # cosine midpoint
    assert lr_at(110, 110, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(500, 110, 10, 1.0) == pytest.approx(0.0, abs=1e-12)  # stays at the end value
    assert lr_at(60, 110, 10, 2.0, "linear") == pytest.approx(1.0)
    assert lr_at(60, 110, 10, 2.0, "constant") == 2.0
    assert warmup_steps_for(243, 0.03) == 8  # ceil(243 steps x 0.03) = 8 (S_w, docs/iterit.md §9)
    with pytest.raises(ValueError):
        lr_at(1, 10, 1, 1.0, "step")


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_schedule_matches_hugging_face(kind):
    from transformers import get_scheduler

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.3)
    name = {"constant": "constant_with_warmup"}.get(kind, kind)
    sched = get_scheduler(name, opt, num_warmup_steps=7, num_training_steps=40)
    for step in range(40):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(step, 40, 7, 0.3, kind), abs=1e-12)
        opt.step()
        sched.step()


def test_steps_per_round():
    assert steps_per_round(2600, 1, 32) == 82  # 81 full steps + one of the 8 leftover micro-batches
    assert steps_per_round(9, 2, 2, epochs=2) == 6


# --- examples and loss ------------------------------------------------------------------------

def test_examples_span_only_the_response(base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    examples, skipped = build_examples(tok, ROWS[:2], SYSTEM, 64, row_weights=[0.5, 2.0])
    assert skipped == 0 and [e.weight for e in examples] == [0.5, 2.0]
    for ex, row in zip(examples, ROWS[:2]):
        start = ex.encoded.span_start
        assert tok.decode(ex.encoded.input_ids[start:]).strip() == row["response"] + "<|end|>"
        assert row["instruction"] in tok.decode(ex.encoded.input_ids[:start])
    # rows longer than max_length are cut, not skipped: the response keeps its head
    cut, skipped = build_examples(tok, ROWS[:2], SYSTEM, 8)
    assert skipped == 0 and len(cut) == 2
    for ex, full in zip(cut, examples):
        assert ex.encoded.truncated and len(ex.encoded.input_ids) <= 8 and ex.encoded.span_len > 0
        assert ex.encoded.input_ids[ex.encoded.span_start:] == full.encoded.input_ids[full.encoded.span_start:][:ex.encoded.span_len]
    # an empty response is skipped and counted
    _, skipped = build_examples(tok, [{**ROWS[0], "response": " "}], SYSTEM, 64)
    assert skipped == 1


def hf_span_loss_sum(model, example) -> torch.Tensor:
    """Reference: Hugging Face's own loss with labels -100 outside the span, times the token count."""
    ids = torch.tensor([example.encoded.input_ids])
    labels = ids.clone()
    labels[0, : example.encoded.span_start] = -100
    return model(input_ids=ids, labels=labels).loss * example.n_response


@torch.no_grad()
def test_micro_batch_loss_is_the_weighted_span_cross_entropy(base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    rows = [ROWS[0], {**ROWS[1], "response": ROWS[1]["response"] + " Yes, the sum."}]  # unequal lengths: padding
    examples, _ = build_examples(tok, rows, SYSTEM, 64, row_weights=[0.25, 3.0])
    mb = micro_batch_loss(model, examples, tok.pad_token_id, denom=7.0, device="cpu")
    expected = sum(e.weight * hf_span_loss_sum(model, e) for e in examples) / 7.0
    # two float32 reductions of the same terms; the longest sum is the vocabulary's log-sum-exp
    rel = len(tok) * EPS32
    assert float(mb.loss) == pytest.approx(float(expected), rel=rel, abs=0)
    assert mb.response_tokens == sum(e.n_response for e in examples)
    assert mb.tokens == sum(len(e.encoded.input_ids) for e in examples)
    assert mb.weighted_tokens == pytest.approx(sum(e.weight * e.n_response for e in examples))
    # step weights multiply the static row weights
    stepped = micro_batch_loss(model, examples, tok.pad_token_id, denom=7.0, device="cpu", weights=[2.0, 0.5])
    assert stepped.weights == pytest.approx([0.5, 1.5])
    expected = (0.5 * hf_span_loss_sum(model, examples[0]) + 1.5 * hf_span_loss_sum(model, examples[1])) / 7.0
    assert float(stepped.loss) == pytest.approx(float(expected), rel=rel, abs=0)


def test_round_reduces_training_loss_and_writes_a_checkpoint(base, tmp_path):
    seen = []
    result = RoundRecipe(config(epochs=4), base, tmp_path / "r0", ROWS * 2, progress=lambda *a: seen.append(a)).run()
    losses = result.log.column("loss").to_pylist()
    assert result.steps == steps_per_round(18, 2, 2, epochs=4) == len(losses) == len(seen)
    assert losses[-1] < 0.6 * losses[0]
    assert result.final_loss == losses[-1]
    assert result.log.column("step").to_pylist() == list(range(1, result.steps + 1))
    state = read_state(tmp_path / "r0")
    assert state["global_step"] == result.steps and state["completed"] is True
    names = {p.name for p in (tmp_path / "r0").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "trainer_state"} <= names
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".inprogress-*"))


# --- state across rounds ----------------------------------------------------------------------

def test_optimizer_state_round_trips_exactly(base, tmp_path):
    from transformers import AutoModelForCausalLM

    def model_and_opt():
        model = AutoModelForCausalLM.from_pretrained(base)
        opt = torch.optim.AdamW(trainer_mod._param_groups(model, 0.1), lr=1e-2)
        return model, opt

    def step(model, opt):
        ids = torch.arange(3, 20).unsqueeze(0)
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()

    m1, o1 = model_and_opt()
    step(m1, o1)
    step(m1, o1)
    save_optimizer(o1, tmp_path / "opt")
    m2, o2 = model_and_opt()
    m2.load_state_dict(m1.state_dict())
    load_optimizer(o2, tmp_path / "opt")
    s1, s2 = o1.state_dict(), o2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert s1["state"].keys() == s2["state"].keys()
    for k in s1["state"]:
        for key, value in s1["state"][k].items():
            assert torch.equal(value, s2["state"][k][key])
    step(m1, o1)
    step(m2, o2)
    for (n, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert torch.equal(p1, p2), n
    json.loads((tmp_path / "opt" / "optimizer.json").read_text())  # plain JSON, no pickle


def test_optimizer_state_refuses_other_parameters(tmp_path):
    a = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW([{"params": list(a.named_parameters())}])
    a(torch.ones(1, 2)).sum().backward()
    opt.step()
    save_optimizer(opt, tmp_path)
    b = torch.nn.Linear(2, 2)
    other = torch.optim.AdamW([{"params": [("renamed." + n, p) for n, p in b.named_parameters()]}])
    with pytest.raises(ValueError):
        load_optimizer(other, tmp_path)


def test_no_pickle_on_the_load_path():
    for module in (state_mod, trainer_mod):
        src = inspect.getsource(module)
        assert "torch.load(" not in src and "import pickle" not in src


def test_schedule_and_moments_continue_across_rounds(base, tmp_path):
    # Full-batch steps over copies of one row make every epoch's batch the same tensor whatever the
    # data order, so two rounds of 3 epochs must equal one round of 6 epochs bit for bit (the same
    # float operations on the same machine) if the global step and AdamW moments carry over exactly.
    rows = [ROWS[5]] * 3
    kw = config(batch_size=len(rows), grad_accum=1, warmup_steps=2, total_steps=6, lr=1e-2)
    one = RoundRecipe(replace(kw, epochs=6), base, tmp_path / "one", rows).run()
    RoundRecipe(replace(kw, epochs=3), base, tmp_path / "r0", rows).run()
    r1 = RoundRecipe(replace(kw, epochs=3, round_index=1), tmp_path / "r0", tmp_path / "r1", rows).run()
    assert r1.log.column("step").to_pylist() == [4, 5, 6]
    assert r1.log.column("lr").to_pylist() == pytest.approx([lr_at(s, 6, 2, 1e-2) for s in (3, 4, 5)])
    assert r1.log.column("lr").to_pylist() == pytest.approx(one.log.column("lr").to_pylist()[3:])
    assert read_state(tmp_path / "r1")["global_step"] == 6
    assert r1.log.column("loss").to_pylist() == one.log.column("loss").to_pylist()[3:]
    w_one, w_two = weights(tmp_path / "one"), weights(tmp_path / "r1")
    assert w_one.keys() == w_two.keys()
    for name in w_one:
        assert torch.equal(w_two[name], w_one[name]), name
    # control: restarting the optimizer and schedule from the round-0 weights gives other weights
    bare = tmp_path / "bare"
    bare.mkdir()
    for p in (tmp_path / "r0").iterdir():
        if p.is_file():
            (bare / p.name).write_bytes(p.read_bytes())
    RoundRecipe(replace(kw, epochs=3, round_index=1), bare, tmp_path / "fresh", rows).run()
    diff = max(float((weights(tmp_path / "fresh")[n] - w_one[n]).abs().max()) for n in w_one)
    assert diff > 1e-3


# --- resume inside a round --------------------------------------------------------------------

class Killed(RuntimeError):
    pass


def test_resume_inside_a_round_gives_bit_identical_weights(tmp_path):
    # attention dropout makes the result depend on the RNG state, which the checkpoint must restore
    base = make_base(tmp_path / "base", attention_dropout=0.2)
    kw = config(epochs=2, save_every=2)
    full = RoundRecipe(kw, base, tmp_path / "full" / "r0", ROWS).run()

    def kill_after_step_3(step, total, loss, tps):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        RoundRecipe(kw, base, tmp_path / "run" / "r0", ROWS, progress=kill_after_step_3).run()
    partial = tmp_path / "run" / ".inprogress-r0"
    assert read_state(partial)["step_in_round"] == 2
    assert not (tmp_path / "run" / "r0").exists()

    resumed_steps = []
    resumed = RoundRecipe(kw, base, tmp_path / "run" / "r0", ROWS, progress=lambda s, *a: resumed_steps.append(s)).run()
    assert resumed_steps[0] == 3  # did not start over
    assert not partial.exists()
    w_full, w_res = weights(tmp_path / "full" / "r0"), weights(tmp_path / "run" / "r0")
    assert w_full.keys() == w_res.keys()
    for name in w_full:
        assert torch.equal(w_full[name], w_res[name]), name
    assert resumed.log.column("loss").to_pylist() == full.log.column("loss").to_pylist()
    assert resumed.log.column("step").to_pylist() == list(range(1, full.steps + 1))
    o_full = load_file(str(tmp_path / "full" / "r0" / "trainer_state" / "optimizer.safetensors"))
    o_res = load_file(str(tmp_path / "run" / "r0" / "trainer_state" / "optimizer.safetensors"))
    assert all(torch.equal(o_full[k], o_res[k]) for k in o_full)

    # control: the same run without restoring the RNG diverges (so the check above can fail)
    w_norng = weights(resumed_with_another_rng(base, tmp_path / "norng" / "r0", kill_after_step_3, kw))
    assert any(not torch.equal(w_full[n], w_norng[n]) for n in w_full)


def resumed_with_another_rng(base, out, kill, kw) -> Path:
    """A round killed by `kill`, then resumed from its in-round checkpoint with a different RNG state."""
    with pytest.raises(Killed):
        RoundRecipe(kw, base, out, ROWS, progress=kill).run()
    state_file = out.parent / f".inprogress-{out.name}" / "trainer_state" / "state.json"
    state = json.loads(state_file.read_text())
    torch.manual_seed(123)
    state["rng"] = state_mod.rng_state()
    state_file.write_text(json.dumps(state))
    RoundRecipe(kw, base, out, ROWS).run()
    return out


@pytest.mark.parametrize("change", ["lr", "rows"])
def test_inprogress_checkpoint_of_another_call_is_discarded(base, tmp_path, change):
    kw = config(save_every=1)

    def kill(step, *a):
        if step == 2:
            raise Killed

    with pytest.raises(Killed):
        RoundRecipe(kw, base, tmp_path / "r0", ROWS, progress=kill).run()
    # another learning rate, or the same hyper-parameters on other rows (one fewer)
    other, rows = (replace(kw, lr=1e-3), ROWS) if change == "lr" else (kw, ROWS[:-1])
    steps = []
    RoundRecipe(other, base, tmp_path / "r0", rows, progress=lambda s, *a: steps.append(s)).run()
    assert steps[0] == 1  # started over
    reference = RoundRecipe(other, base, tmp_path / "ref", rows).run()
    assert reference.steps == len(steps)
    w_a, w_b = weights(tmp_path / "r0"), weights(tmp_path / "ref")
    assert all(torch.equal(w_a[n], w_b[n]) for n in w_a)


def test_every_epoch_and_round_has_its_own_data_order():
    n, seed = 40, 7
    orders = {(r, e): trainer_mod.epoch_order(n, seed, r, e) for r in range(2) for e in range(2)}
    assert all(sorted(o) == list(range(n)) for o in orders.values())
    assert len({tuple(o) for o in orders.values()}) == 4  # 40! orders: a repeat is not chance
    assert trainer_mod.epoch_order(n, seed, 1, 1) == orders[1, 1]  # a function of its arguments only
    assert trainer_mod.epoch_order(n, seed + 1, 0, 0) != orders[0, 0]


# --- loss normalisation and row weights -------------------------------------------------------

def test_step_loss_is_the_token_mean_over_all_accumulated_micro_batches(base, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    rows = ROWS + [{**ROWS[0], "response": "A longer answer: the sum is zero, as always."}]
    examples, _ = build_examples(tok, rows, SYSTEM, 64)
    with torch.no_grad():
        sums = torch.stack([hf_span_loss_sum(model, e) for e in examples])
    counts = torch.tensor([e.n_response for e in examples])
    token_mean = float(sums.sum() / counts.sum())
    per_row_mean = float((sums / counts).mean())
    rel = len(tok) * EPS32  # two float32 reductions of the same terms (longest sum: the log-sum-exp)
    assert abs(token_mean - per_row_mean) > 3 * rel * token_mean  # the reductions differ by more than rel
    # one optimizer step per epoch made of 4 micro-batches of 3 (the last one short)
    result = RoundRecipe(config(batch_size=3, grad_accum=4, epochs=1), base, tmp_path / "r0", rows).run()
    assert result.steps == 1
    assert result.log.column("loss")[0].as_py() == pytest.approx(token_mean, rel=rel, abs=0)
    assert result.log.column("response_tokens")[0].as_py() == int(counts.sum())


KEPT = ROWS[:4]
IGNORED = [{**r, "response": "Something else entirely."} for r in ROWS[4:]]
# other rows, other responses, the same token counts (checked below): the same tensor shapes as IGNORED
IGNORED_OTHER = [{**r, "response": "Nothing else whatsoever."} for r in reversed(ROWS[4:])]
ZERO_WEIGHTS = [1.0] * len(KEPT) + [0.0] * len(IGNORED)


def test_zero_weight_rows_contribute_exactly_zero_gradient(base):
    """Every module output of a zero-weight row gets an exactly zero gradient (0 * finite = 0 in IEEE
    arithmetic, on any CPU), so its contribution to every parameter gradient is exactly zero."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    examples, _ = build_examples(tok, KEPT + IGNORED, SYSTEM, 64, row_weights=ZERO_WEIGHTS)
    outputs = []

    def keep(module, inputs, out):
        if isinstance(out, torch.Tensor) and out.requires_grad and out.shape[0] == len(examples):
            out.retain_grad()
            outputs.append((module.__class__.__name__, out))

    hooks = [m.register_forward_hook(keep) for m in model.modules() if not list(m.children())]
    try:
        micro_batch_loss(model, examples, tok.pad_token_id, denom=10.0, device="cpu").loss.backward()
    finally:
        for h in hooks:
            h.remove()
    kinds = {kind for kind, _ in outputs}
    assert {"Embedding", "Linear"} <= kinds and any("Norm" in k for k in kinds), kinds
    for kind, out in outputs:
        assert torch.count_nonzero(out.grad[len(KEPT):]) == 0, kind
        assert torch.count_nonzero(out.grad[: len(KEPT)]) > 0, kind
    # and rows of weight zero alone leave every parameter gradient exactly zero
    model.zero_grad(set_to_none=False)
    micro_batch_loss(model, examples[len(KEPT):], tok.pad_token_id, denom=10.0, device="cpu").loss.backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())


def test_zero_weight_rows_do_not_train(base, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    shape = lambda rows: [(len(e.encoded.input_ids), e.encoded.span_start, e.n_response)  # noqa: E731
                          for e in build_examples(tok, rows, SYSTEM, 64)[0]]
    assert shape(IGNORED) == shape(IGNORED_OTHER)
    kw = config(batch_size=len(ROWS), grad_accum=1, epochs=3)

    # Zero-weight rows of other content, same shapes: the same float operations on the same machine,
    # so the trained weights are bit-identical when (and only when) those rows contribute nothing.
    one = RoundRecipe(kw, base, tmp_path / "w", KEPT + IGNORED, row_weights=ZERO_WEIGHTS).run()
    other = RoundRecipe(kw, base, tmp_path / "o", KEPT + IGNORED_OTHER, row_weights=ZERO_WEIGHTS).run()
    w_one, w_other = weights(tmp_path / "w"), weights(tmp_path / "o")
    assert all(torch.equal(w_one[n], w_other[n]) for n in w_one)
    assert one.log.column("loss").to_pylist() == other.log.column("loss").to_pylist()
    # control: with weight 1 the same two row sets train different weights
    RoundRecipe(kw, base, tmp_path / "w1", KEPT + IGNORED).run()
    RoundRecipe(kw, base, tmp_path / "o1", KEPT + IGNORED_OTHER).run()
    w1, o1 = weights(tmp_path / "w1"), weights(tmp_path / "o1")
    assert not all(torch.equal(w1[n], o1[n]) for n in w1)

    # Against training on the kept rows alone, the per-step loss (the weighted token mean) must agree:
    # zero-weight rows neither train nor dilute the mean. The two runs differ only in rounding (other
    # batch shapes); each step's loss is a float32 reduction whose longest sum is the vocabulary's
    # log-sum-exp, so rounding moves it by at most ~len(vocab) * eps relative per step; summed over
    # the steps. (The weights are not compared coordinate by coordinate: Adam divides by the
    # gradient's magnitude, so rounding can flip a near-zero step and move that one weight by up to
    # lr; such a weight barely changes the loss, whose gradient there is near zero.)
    alone = RoundRecipe(kw, base, tmp_path / "a", KEPT).run()
    losses, alone_losses = one.log.column("loss").to_pylist(), alone.log.column("loss").to_pylist()
    assert len(losses) == len(alone_losses) == 3
    for step, (x, y) in enumerate(zip(losses, alone_losses), 1):
        assert x == pytest.approx(y, rel=step * len(tok) * EPS32, abs=0), step
    with pytest.raises(ValueError):
        RoundRecipe(kw, base, tmp_path / "bad", ROWS, row_weights=[1.0]).run()


def test_matches_a_plain_reference_loop(base, tmp_path):
    """Independent re-implementation: row-by-row HF loss, AdamW, clipping at 1.0, the schedule."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = config(epochs=2, weight_decay=0.1, lr=2e-2)  # 9 rows, 2 x 2 rows per step: 3 steps per epoch
    RoundRecipe(kw, base, tmp_path / "r0", ROWS).run()

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    model.train()
    examples, _ = build_examples(tok, ROWS, SYSTEM, 64)
    groups = [
        {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=2e-2)
    step, grad_norms = 0, []
    for epoch in range(2):
        order = trainer_mod.epoch_order(len(examples), 7, 0, epoch)
        for start in range(0, len(order), 4):
            chunk = [examples[i] for i in order[start : start + 4]]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, 30, 2, 2e-2)
            n_tokens = sum(e.n_response for e in chunk)
            opt.zero_grad()
            for e in chunk:
                (hf_span_loss_sum(model, e) / n_tokens).backward()
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
            opt.step()
            step += 1
    assert max(grad_norms) > 1.0  # clipping was active, so the comparison covers it
    ours = weights(tmp_path / "r0")
    reference = {name: p for name, p in model.state_dict().items() if name in ours}
    assert reference.keys() == ours.keys()
    assert_adam_weights_agree(ours, reference, steps=step, max_lr=2e-2, reduction=len(tok))
    # the trained function: the summed span loss of the training rows (rounding and rare flipped
    # near-zero steps move it by far less than the bound; a missing clip moves it by ~8000 eps)
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "r0")
    with torch.no_grad():
        ours_loss = sum(float(hf_span_loss_sum(trained, e)) for e in examples)
        ref_loss = sum(float(hf_span_loss_sum(model, e)) for e in examples)
    assert ours_loss == pytest.approx(ref_loss, rel=step * len(tok) * EPS32, abs=0)


def assert_adam_weights_agree(ours: dict, reference: dict, steps: int, max_lr: float, reduction: int) -> None:
    """Two AdamW trainings that differ only in float32 summation order agree weight by weight to
    steps * max_lr * reduction * eps: Adam's step is lr * m/sqrt(v), as sensitive to the gradient's
    relative rounding error (at most ~reduction * eps for the longest float32 sum, the vocabulary's
    log-sum-exp) as that error itself. Exception: where a step's gradient is within rounding of zero,
    rounding picks the step's sign and moves that weight by up to lr; those are rare, so at most
    1 in 1000 weights of a tensor (at least one) may exceed the bound. An algorithmic difference
    (a missing clip, another schedule) moves nearly every weight."""
    atol = steps * max_lr * reduction * EPS32
    for name, ref in reference.items():
        outside = int(((ours[name] - ref).abs() > atol).sum())
        assert outside <= max(1, ref.numel() // 1000), (name, outside, ref.numel(), atol)
