"""Round training: one resumable fine-tuning round per selection round (docs/iterit.md §9)."""
from curate.training.schedule import lr_at, steps_per_round, warmup_steps_for
from curate.training.trainer import RoundConfig, RoundRecipe, RoundResult

__all__ = ["RoundConfig", "RoundRecipe", "RoundResult", "lr_at", "steps_per_round", "warmup_steps_for"]
