"""Training: the one loop (`Trainer`), recommendation losses, batches and checkpoints."""

from distillrec.train.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["TrainConfig", "Trainer", "TrainResult"]
