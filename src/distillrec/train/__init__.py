"""Training: the one loop (`Trainer`), recommendation losses, batches and checkpoints."""

from distillrec.train.trainer import TrainConfig, Trainer, TrainResult, history_for

__all__ = ["TrainConfig", "Trainer", "TrainResult", "history_for"]
