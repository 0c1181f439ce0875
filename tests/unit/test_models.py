"""Default tiny model: tokenizer, tiny Llama, brief pre-training, loading."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from curate.models.chat import TINY_CHAT_TEMPLATE, TINY_SPECIAL_TOKENS, conversation, encode_conditional
from curate.models.loading import ModelLoadError, load_causal_lm, model_digest
from curate.models.pretrain import build_base_model, pack_texts, pretrain
from curate.models.tiny_llama import build_tiny_llama
from curate.models.tokenizer import train_tokenizer

CORPUS = [
    f"The capital of Land{i} is City{i}. {a} plus {b} is {a + b}."
    for i in range(40)
    for a, b in [(i, 3), (7, i)]
]
ROW = {"system": "", "context": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
       "instruction": "What is the capital of Land3?", "input": "", "response": "The capital of Land3 is City3."}


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, vocab_size=400)



def test_tokenizer_special_tokens_are_atomic_and_ids_fixed(tok):
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|end|>"
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1
    for t in TINY_SPECIAL_TOKENS:
        assert tok(t, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(t)]
    assert len(tok) <= 400


def test_tokenizer_is_byte_level_and_lossless(tok):
    text = "Ünïcødé ✓ never seen \t tabs\nand 12345"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.unk_token_id is None or tok.unk_token_id not in ids


def test_tokenizer_is_deterministic(tok):
    again = train_tokenizer(CORPUS, vocab_size=400)
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    other = train_tokenizer(CORPUS[::-1][:20], vocab_size=400)
    assert other.backend_tokenizer.to_str() != tok.backend_tokenizer.to_str()


def test_tokenizer_round_trip_keeps_template_and_offsets(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.chat_template == TINY_CHAT_TEMPLATE
    assert (loaded.pad_token_id, loaded.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    msgs = conversation(ROW, "You are a helpful assistant.")
    text = loaded.apply_chat_template(msgs, tokenize=False)
    assert text == tok.apply_chat_template(msgs, tokenize=False)
    assert text.startswith("<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHi<|end|>\n")
    enc = loaded(text, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert all(a <= b for a, b in enc["offset_mapping"]) and enc["offset_mapping"][-1][1] == len(text)
    a = encode_conditional(loaded, ROW, "S", 256)
    assert a == encode_conditional(tok, ROW, "S", 256)
    assert loaded.decode(a.input_ids[a.span_start:]) == ROW["response"] + "<|end|>\n"


def test_tiny_llama_size_tied_and_seeded():
    model = build_tiny_llama(2048, seed=1)
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n <= 5_000_000
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    same = build_tiny_llama(2048, seed=1)
    other = build_tiny_llama(2048, seed=2)
    w, w_same, w_other = (m.model.layers[0].mlp.up_proj.weight for m in (model, same, other))
    assert torch.equal(w, w_same) and not torch.equal(w, w_other)


def test_build_does_not_disturb_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_tiny_llama(300, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_pack_texts_separates_with_eos(tok):
    assert tok.tokenize("a b") == ["a", "Ġ", "b"] and tok.tokenize("c d") == ["c", "Ġ", "d"]
    chunks = pack_texts(tok, ["a b", "c d"], seq_len=3)
    # the stream a Ġ b <|end|> c Ġ d <|end|> in full chunks of 3: the last two tokens do not fill one
    assert [tok.convert_ids_to_tokens(c) for c in chunks.tolist()] == [["a", "Ġ", "b"], ["<|end|>", "c", "Ġ"]]
    with pytest.raises(ValueError, match="corpus too small"):
        pack_texts(tok, ["a"], seq_len=64)


def _small(tok, seed=0):
    return build_tiny_llama(len(tok), hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                            max_positions=64, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=seed)


def test_pretrain_reduces_loss_and_is_deterministic(tok):
    kw = dict(steps=40, batch_size=8, seq_len=32, lr=1e-2, seed=5)
    model = _small(tok)
    calls = []
    stats = pretrain(model, tok, CORPUS, progress=lambda d, t, rate, loss: calls.append((d, t)), **kw)
    losses = stats["losses"]
    assert len(losses) == 40 and stats["tokens"] == 40 * 8 * 32
    assert sum(losses[-5:]) / 5 < losses[0] - 1.5
    assert calls[-1] == (40 * 8 * 32, 40 * 8 * 32)
    assert not model.training
    again = pretrain(_small(tok), tok, CORPUS, **kw)
    assert again["losses"] == losses


def test_build_base_model_saves_a_loadable_model(tmp_path):
    rows = [{"instruction": f"Capital of Land{i}?", "input": "", "output": f"City{i}."} for i in range(30)]
    out = tmp_path / "base"
    stats = build_base_model(
        out, rows=rows, prose=CORPUS, vocab_size=350,
        model_kwargs=dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=64),
        pretrain_kwargs=dict(steps=3, batch_size=4, seq_len=32, lr=1e-3), seed=0,
    )
    assert stats["n_texts"] == 30 + len(CORPUS) and len(stats["losses"]) == 3
    assert (out / "model.safetensors").is_file() and (out / "chat_template.jinja").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    model, tok = load_causal_lm(out)
    assert not model.training and model.dtype == torch.float32
    assert tok.chat_template == TINY_CHAT_TEMPLATE and tok.pad_token_id == 0
    digest = model_digest(out)
    assert digest == model_digest(str(out)) and len(digest) == 64
    (out / "model.safetensors").write_bytes(b"changed")
    assert model_digest(out) != digest


def test_load_sets_missing_pad_token_to_eos(tmp_path, tok):
    model = _small(tok)
    model.save_pretrained(tmp_path)
    tok_no_pad = train_tokenizer(CORPUS, vocab_size=400)
    tok_no_pad.pad_token = None
    tok_no_pad.save_pretrained(tmp_path)
    _, loaded = load_causal_lm(tmp_path, dtype="float32")
    assert loaded.pad_token == loaded.eos_token == "<|end|>"


def test_uncached_hub_id_fails_fast(monkeypatch, tmp_path):
    """Offline, an uncached hub id fails at the cache look-up without one network attempt (online, the hub's
    retries take ~50 s on a machine without network: bench/offline_load.py times both)."""
    import socket

    import huggingface_hub.constants as hf_constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    attempts = []  # every name look-up or connection: how a request to the hub starts
    lookup, connect = socket.getaddrinfo, socket.socket.connect
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a[:2]) or lookup(*a, **k))
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: attempts.append(address) or connect(self, address))
    with pytest.raises(ModelLoadError, match="not a local directory and is not in the Hugging Face cache") as raised:
        load_causal_lm("no-such-org/no-such-model")
    assert attempts == []
    causes, error = [], raised.value
    while error is not None:
        causes.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(c, LocalEntryNotFoundError) for c in causes)  # the hub refused to go online


def test_missing_local_path_is_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="model directory not found"):
        load_causal_lm(tmp_path / "absent")
