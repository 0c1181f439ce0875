"""Evaluation of round checkpoints on held-out sets."""
from curate.evaluation.heldout import evaluate, evaluate_checkpoint

__all__ = ["evaluate", "evaluate_checkpoint"]
