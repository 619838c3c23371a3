"""Training: the loop, checkpoints and what a run writes."""
from ganforge.training.checkpoint import RunError, find_checkpoint, list_checkpoints
from ganforge.training.trainer import Trainer, TrainingError

__all__ = ["Trainer", "TrainingError", "RunError", "find_checkpoint", "list_checkpoints"]
