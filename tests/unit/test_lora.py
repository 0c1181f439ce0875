"""LoRA rounds: the adapter is the artifact, it continues across rounds, resumes bit-identically,
loads merged for scoring, and the online policies train it."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from curate.artifacts import digest
from curate.config import LLAMA_LINEAR_MODULES, AdaptOnline, FilterThenWeightOnline, LoraParams
from curate.models.loading import ModelLoadError, load_causal_lm
from curate.training import RoundRecipe, lr_at
from curate.training.state import read_state
from test_training import ROWS, Killed, assert_adam_weights_agree, config, make_base, resumed_with_another_rng

LORA = dict(enabled=True, rank=4, alpha=8.0, dropout=0.0, target_modules=list(LLAMA_LINEAR_MODULES))
ADAPTER = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_base(tmp_path_factory.mktemp("lora-base") / "model")


def adapter(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / ADAPTER))


def lora_config(**over):
    return config(**{"lr": 2e-2, "lora": LoraParams(**LORA), **over})


def test_lora_round_writes_the_adapter_and_leaves_the_base_alone(base, tmp_path):
    before = digest(base)
    result = RoundRecipe(lora_config(epochs=4), base, tmp_path / "r0", ROWS * 2).run()
    losses = result.log.column("loss").to_pylist()
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.2  # a rank-4 adapter on a random 32-d model learns slowly
    out = tmp_path / "r0"
    names = {p.name for p in out.iterdir()}
    assert {ADAPTER, "adapter_config.json", "base.json", "tokenizer.json", "trainer_state"} <= names
    assert "model.safetensors" not in names
    assert json.loads((out / "base.json").read_text()) == {"path": str(base.resolve()), "digest": before}
    assert digest(base) == before
    tensors = adapter(out)
    assert tensors and all(".lora_A." in k or ".lora_B." in k for k in tensors)
    assert {k.split(".")[-3] for k in tensors} == set(LLAMA_LINEAR_MODULES)  # ... q_proj.lora_A.weight
    assert any(float(t.abs().max()) > 0 for k, t in tensors.items() if ".lora_B." in k)  # B starts at 0: it trained
    moments = load_file(str(out / "trainer_state" / "optimizer.safetensors"))
    assert moments and all(".lora_" in k for k in moments)  # Adam state only for the adapter


def test_adapter_loads_merged_and_matches_the_adapted_model(base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    RoundRecipe(lora_config(), base, tmp_path / "r0", ROWS).run()
    merged, tok = load_causal_lm(tmp_path / "r0", dtype="float32", device="cpu")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "r0").eval()
    plain = AutoModelForCausalLM.from_pretrained(base).eval()
    ids = torch.tensor([tok("Add 1 and 2. The sum is 3.")["input_ids"]])
    with torch.no_grad():
        a, b, c = merged(input_ids=ids).logits, unmerged(input_ids=ids).logits, plain(input_ids=ids).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # merging = the adapted model, up to fp32 summation order
    assert float((a - c).abs().max()) > 1e-2  # and the adapter changed the model


def test_a_changed_or_missing_base_is_refused(tmp_path):
    base = make_base(tmp_path / "base")
    RoundRecipe(lora_config(epochs=1), base, tmp_path / "r0", ROWS).run()
    model_config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**model_config, "rms_norm_eps": 1e-5}))
    with pytest.raises(ModelLoadError, match="changed"):
        load_causal_lm(tmp_path / "r0")
    with pytest.raises(ModelLoadError, match="changed"):  # training on from it is refused too
        RoundRecipe(lora_config(epochs=1, round_index=1), tmp_path / "r0", tmp_path / "r1", ROWS).run()
    shutil.rmtree(base)
    with pytest.raises(ModelLoadError, match="gone"):
        load_causal_lm(tmp_path / "r0")


def test_one_training_mode_and_adapter_shape_per_run(base, tmp_path):
    RoundRecipe(lora_config(epochs=1), base, tmp_path / "r0", ROWS).run()
    with pytest.raises(ValueError, match="lora.enabled is false"):
        RoundRecipe(config(epochs=1, round_index=1), tmp_path / "r0", tmp_path / "full", ROWS).run()
    with pytest.raises(ValueError, match="one adapter shape"):
        rank8 = lora_config(epochs=1, round_index=1, lora=LoraParams(**{**LORA, "rank": 8}))
        RoundRecipe(rank8, tmp_path / "r0", tmp_path / "r8", ROWS).run()


def test_adapter_schedule_and_moments_continue_across_rounds(base, tmp_path):
    # full-batch steps: two rounds of 3 epochs equal one round of 6 when adapter, step and moments carry over.
    # Copies of one row make every epoch's batch the same tensor whatever the data order, so the two runs do
    # the same float operations on this machine and must agree bit for bit.
    rows = [ROWS[0]] * 3
    kw = lora_config(batch_size=len(rows), grad_accum=1, warmup_steps=2, total_steps=6)
    RoundRecipe(replace(kw, epochs=6), base, tmp_path / "one", rows).run()
    RoundRecipe(replace(kw, epochs=3), base, tmp_path / "r0", rows).run()
    r1 = RoundRecipe(replace(kw, epochs=3, round_index=1), tmp_path / "r0", tmp_path / "r1", rows).run()
    assert r1.log.column("lr").to_pylist() == pytest.approx([lr_at(s, 6, 2, 2e-2) for s in (3, 4, 5)])
    assert read_state(tmp_path / "r1")["global_step"] == 6
    assert json.loads((tmp_path / "r1" / "base.json").read_text())["path"] == str(base.resolve())  # still the base
    w_one, w_two = adapter(tmp_path / "one"), adapter(tmp_path / "r1")
    assert w_one.keys() == w_two.keys()
    assert all(torch.equal(w_two[name], w_one[name]) for name in w_one)
    # control: the round-0 adapter without its trainer state restarts the schedule and moments
    bare = tmp_path / "bare"
    shutil.copytree(tmp_path / "r0", bare, ignore=shutil.ignore_patterns("trainer_state"))
    RoundRecipe(replace(kw, epochs=3, round_index=1), bare, tmp_path / "fresh", rows).run()
    assert max(float((adapter(tmp_path / "fresh")[n] - w_one[n]).abs().max()) for n in w_one) > 1e-3


def test_lora_resume_inside_a_round_gives_bit_identical_adapter(tmp_path):
    # adapter and attention dropout make the result depend on the RNG state the checkpoint restores
    base = make_base(tmp_path / "base", attention_dropout=0.2)
    kw = lora_config(epochs=2, save_every=2, lora=LoraParams(**{**LORA, "dropout": 0.2}))
    full = RoundRecipe(kw, base, tmp_path / "full" / "r0", ROWS).run()

    def kill_after_step_3(step, *a):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        RoundRecipe(kw, base, tmp_path / "run" / "r0", ROWS, progress=kill_after_step_3).run()
    partial = tmp_path / "run" / ".inprogress-r0"
    assert read_state(partial)["step_in_round"] == 2 and (partial / ADAPTER).is_file()
    resumed_steps = []
    resumed = RoundRecipe(kw, base, tmp_path / "run" / "r0", ROWS, progress=lambda s, *a: resumed_steps.append(s)).run()
    assert resumed_steps[0] == 3 and not partial.exists()
    w_full, w_res = adapter(tmp_path / "full" / "r0"), adapter(tmp_path / "run" / "r0")
    assert w_full.keys() == w_res.keys()
    assert all(torch.equal(w_full[n], w_res[n]) for n in w_full)
    assert resumed.log.column("loss").to_pylist() == full.log.column("loss").to_pylist()
    o_full = load_file(str(tmp_path / "full" / "r0" / "trainer_state" / "optimizer.safetensors"))
    o_res = load_file(str(tmp_path / "run" / "r0" / "trainer_state" / "optimizer.safetensors"))
    assert o_full.keys() == o_res.keys() and all(torch.equal(o_full[k], o_res[k]) for k in o_full)

    # control: resuming with another RNG state diverges, so the equality above can fail
    w_norng = adapter(resumed_with_another_rng(base, tmp_path / "norng" / "r0", kill_after_step_3, kw))
    assert any(not torch.equal(w_full[n], w_norng[n]) for n in w_full)


def test_gradient_checkpointing_trains_the_same_adapter(base, tmp_path):
    kw = lora_config(epochs=1)
    plain = RoundRecipe(kw, base, tmp_path / "plain", ROWS).run()
    ckpt = RoundRecipe(replace(kw, gradient_checkpointing=True), base, tmp_path / "ckpt", ROWS).run()
    # recomputed activations: the same function, up to float32 summation order in backward
    vocab = AutoConfig.from_pretrained(base).vocab_size
    eps = torch.finfo(torch.float32).eps
    assert ckpt.log.column("loss").to_pylist() == pytest.approx(plain.log.column("loss").to_pylist(),
                                                               rel=plain.steps * vocab * eps)
    assert_adam_weights_agree(adapter(tmp_path / "ckpt"), adapter(tmp_path / "plain"), steps=plain.steps,
                              max_lr=2e-2, reduction=vocab)


def test_bf16_autocast_keeps_fp32_weights_and_close_losses(base, tmp_path):
    kw = lora_config(epochs=1)
    fp32 = RoundRecipe(kw, base, tmp_path / "fp32", ROWS).run()
    bf16 = RoundRecipe(replace(kw, precision="bf16"), base, tmp_path / "bf16", ROWS).run()
    # bf16 keeps 8 significand bits (relative rounding 2**-8 per op); the first step's loss is a mean of many
    assert bf16.log.column("loss")[0].as_py() == pytest.approx(fp32.log.column("loss")[0].as_py(), rel=2e-2)
    assert bf16.log.column("loss").to_pylist() != fp32.log.column("loss").to_pylist()  # autocast did run in bf16
    assert all(t.dtype == torch.float32 for t in adapter(tmp_path / "bf16").values())


ONLINE = {"adapt": AdaptOnline(refresh_every=2), "filter-then-weight": FilterThenWeightOnline(target_batch=2)}


@pytest.mark.parametrize("policy", ["adapt", "filter-then-weight"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_online_policies_train_the_adapter(base, tmp_path, policy, checkpointing):
    anchors = [{**r, "response": f"The sum is {i}."} for i, r in enumerate(ROWS[:3])]
    kw = lora_config(batch_size=4, grad_accum=1, epochs=2)
    result = RoundRecipe(replace(kw, online=ONLINE[policy], gradient_checkpointing=checkpointing), base, tmp_path / "r0",
                         ROWS, anchors=anchors).run()
    log = result.log.to_pylist()
    lineage = result.lineage.to_pylist()
    assert lineage and all(x["score"] is not None for x in lineage)  # the policy scored every trained row
    if policy == "filter-then-weight":
        assert all(x["kept"] < x["candidates"] or x["candidates"] == 1 for x in log)  # it selected
        assert all(x["residual"] is not None for x in log)
    else:
        assert len({round(x["weight"], 6) for x in lineage}) > 1  # it weighted rows unequally
    RoundRecipe(kw, base, tmp_path / "u", ROWS).run()
    a, b = adapter(tmp_path / "r0"), adapter(tmp_path / "u")
    assert a.keys() == b.keys() and any(not torch.allclose(a[n], b[n]) for n in a)


def test_mlflow_logs_the_adapter_with_its_base(base, tmp_path, monkeypatch):
    import mlflow

    from curate.tracking import mlflow_tracking as mt

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    RoundRecipe(lora_config(epochs=1), base, tmp_path / "r0", ROWS).run()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run(experiment_id=mt.experiment_id("lora", str(tmp_path / "artifacts"))) as run:
            uri = mt._log_model(tmp_path / "r0", "round-0-model", "d0")
        assert mt.resolve_run(uri) == run.info.run_id  # what `curate audit checkpoint models:/...` starts from
        logged = mlflow.get_logged_model(uri[len("models:/"):])
        ref = json.loads((tmp_path / "r0" / "base.json").read_text())
        assert logged.tags[mt.TAG_BASE_PATH] == ref["path"] and logged.tags[mt.TAG_BASE_DIGEST] == ref["digest"]
        assert mlflow.get_run(run.info.run_id).data.tags[mt.TAG_BASE_DIGEST] == ref["digest"]
        stored = Path(mlflow.artifacts.download_artifacts(logged.artifact_location, dst_path=str(tmp_path / "dl")))
        names = {p.name for p in stored.iterdir()}
        assert {ADAPTER, "adapter_config.json", "base.json", "tokenizer.json"} <= names and "trainer_state" not in names
        assert (stored / ADAPTER).read_bytes() == (tmp_path / "r0" / ADAPTER).read_bytes()
    finally:
        mlflow.set_tracking_uri(None)


def test_export_merged_writes_the_merged_model(base, tmp_path):
    from curate.export import write_merged_model

    RoundRecipe(lora_config(epochs=1), base, tmp_path / "r0", ROWS).run()
    entry = write_merged_model(tmp_path / "r0", tmp_path / "export")
    out = tmp_path / "export" / "model"
    assert entry["dir"] == "model" and entry["digest"] == digest(out)
    assert entry["base_model"] == json.loads((tmp_path / "r0" / "base.json").read_text())
    assert (out / "model.safetensors").is_file() and not (out / "trainer_state").exists()
    # against the LoRA merge written out by hand from the files: W + (alpha / rank) B A on every adapted
    # linear layer, every other tensor the base's own
    exported, weights = load_file(str(out / "model.safetensors")), load_file(str(base / "model.safetensors"))
    lora = adapter(tmp_path / "r0")
    assert exported.keys() == weights.keys()
    scale, eps = LORA["alpha"] / LORA["rank"], torch.finfo(torch.float32).eps
    adapted = set()
    for name, a in lora.items():
        if ".lora_A." not in name:
            continue
        key = name.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        delta = scale * (lora[name.replace(".lora_A.", ".lora_B.")].double() @ a.double())
        want = weights[key].double() + delta
        # one float32 product of rank terms and one sum: (rank + 2) roundings of the largest term at most
        bound = (LORA["rank"] + 2) * eps * float(weights[key].abs().max() + delta.abs().max())
        torch.testing.assert_close(exported[key].double(), want, rtol=0, atol=bound)
        assert float(delta.abs().max()) > 100 * bound  # the adapter moved this layer: the check can fail
        adapted.add(key)
    assert len(adapted) == 2 * len(LLAMA_LINEAR_MODULES)  # two layers
    assert all(torch.equal(exported[k], weights[k]) for k in exported.keys() - adapted)


def test_adapter_checkpoints_hold_no_pickle(base, tmp_path):
    import inspect

    from curate.training import lora as lora_mod

    src = inspect.getsource(lora_mod)
    assert "torch.load(" not in src and "import pickle" not in src
    RoundRecipe(lora_config(epochs=1), base, tmp_path / "r0", ROWS).run()
    suffixes = {p.suffix for p in (tmp_path / "r0").rglob("*") if p.is_file()}
    assert suffixes <= {".safetensors", ".json", ".jinja", ".md"}, suffixes  # no .bin / .pt
