"""Language models: the default tiny base (tokenizer, tiny Llama, brief pre-training), loading of
any Hugging Face causal LM, and the chat-template texts shared by scoring and training.

    chat.py        conversation texts and response spans (docs/iterit.md §1)
    truncation.py  the token-budget rule: oldest turns dropped first, the response keeps its head
    tokenizer.py   train_tokenizer: byte-level BPE with the chat special tokens and template
    tiny_llama.py  build_tiny_llama: ~1M-parameter Llama, tied embeddings, seeded init
    pretrain.py    pretrain / build_base_model: packed causal-LM pre-training on chat rows + prose
    loading.py     load_causal_lm (offline, local dir or cached hub id), model_digest

Submodules are imported explicitly (`from curate.models.loading import load_causal_lm`) so that
importing `curate.models.chat` stays free of torch/transformers.
"""
