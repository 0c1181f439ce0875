"""Synthetic demo data: a noisy instruction pool with known noise labels, held-out sets, and a
pre-training corpus, all about one small fictional world (see pool.py)."""
from curate.demo.pool import generate_eval_sets, generate_pool, pretrain_prose, pretrain_rows, write_demo

__all__ = ["generate_eval_sets", "generate_pool", "pretrain_prose", "pretrain_rows", "write_demo"]
