"""Sentence embeddings. minilm.py: all-MiniLM-L6-v2 on plain transformers.

    from curate.embed.minilm import embed_texts, load_encoder
"""
