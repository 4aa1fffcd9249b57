"""distillrec: distill and transfer pretrained language-model knowledge into lightweight recommenders."""

__version__ = "0.1.0"
