"""Adapting the language model itself: LoRA / AdaLoRA through `peft`, or full fine-tuning.

transformers 5.x wants peft >= 0.22 for `SentenceTransformer.add_adapter`, which does not
exist yet, so the adapter is applied to the inner Hugging Face model directly
(`st[0].model = get_peft_model(st[0].model, config)`; `st[0].auto_model` is read-only and
assigning it is silently ignored). The sentence-transformers pipeline around it (pooling,
normalisation) is unchanged, so the tuned model still encodes like the original.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, Sequence

import torch

from distillrec.errors import DistillrecError
from distillrec.teachers.encoders import resolve_model, set_offline

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PeftMethod = Literal["lora", "adalora"]
PEFT_METHODS: tuple[str, ...] = ("lora", "adalora")
#: the Linear layers of BERT-style encoders (MiniLM included).
BERT_LINEAR_MODULES: tuple[str, ...] = ("query", "key", "value", "dense")


def load_sentence_transformer(model: str | os.PathLike | None = None, device: str = "cpu") -> "SentenceTransformer":
    """A trainable SentenceTransformer from a local folder (None: the bundled MiniLM), offline."""
    set_offline()  # before the import: the Hugging Face libraries read it once
    from sentence_transformers import SentenceTransformer

    path = resolve_model(model)
    if not (path / "modules.json").exists():
        raise DistillrecError(f"{path} is not a sentence-transformers folder (no modules.json); "
                              "fine-tuning needs one")
    return SentenceTransformer(str(path), device=device)


def apply_peft(st: "SentenceTransformer", method: PeftMethod = "lora", *, r: int = 8, alpha: int = 16,
               dropout: float = 0.1, target_modules: Sequence[str] = BERT_LINEAR_MODULES,
               total_steps: int | None = None) -> "SentenceTransformer":
    """Wrap `st`'s transformer in a LoRA or AdaLoRA adapter, in place; returns `st`.

    Only the adapter matrices are trainable afterwards; every base weight is frozen.
    AdaLoRA reallocates rank over `total_steps` training steps (required for it), and only
    if `update_rank_budget` is called each step (see `distillrec.teachers.models`).
    """
    from peft import AdaLoraConfig, LoraConfig, get_peft_model

    if method not in PEFT_METHODS:
        raise DistillrecError(f"unknown PEFT method {method!r}; expected one of {', '.join(PEFT_METHODS)}")
    if r < 1:
        raise DistillrecError(f"LoRA rank r must be >= 1, got {r}")
    targets = list(target_modules)
    linear_names = {name.rsplit(".", 1)[-1] for name, module in st[0].model.named_modules()
                    if isinstance(module, torch.nn.Linear)}
    unknown = sorted(set(targets) - linear_names)
    if not targets or unknown:
        raise DistillrecError(f"target_modules {targets} must name Linear layers of the model; "
                              f"{unknown or 'none given'} not found among {sorted(linear_names)}")
    if method == "lora":
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    else:
        if not total_steps or total_steps < 3:
            raise DistillrecError("AdaLoRA needs total_steps >= 3 (its rank schedule spans the run)")
        # Warm-up, reallocation and final phases over the run, as in the AdaLoRA paper's ratios.
        config = AdaLoraConfig(init_r=r, target_r=max(1, r // 2), lora_alpha=alpha, lora_dropout=dropout,
                               target_modules=targets, total_step=total_steps,
                               tinit=total_steps // 10, tfinal=total_steps // 5)
    st[0].model = get_peft_model(st[0].model, config)
    return st


def unfreeze_all(st: "SentenceTransformer") -> "SentenceTransformer":
    """Full fine-tuning: every parameter of the language model trainable."""
    for parameter in st.parameters():
        parameter.requires_grad_(True)
    return st


def update_rank_budget(st: "SentenceTransformer", step: int) -> None:
    """AdaLoRA's rank reallocation for `step`; must see the gradients of that step. A no-op
    for LoRA and full fine-tuning."""
    inner = st[0].model
    if hasattr(inner, "base_model") and hasattr(inner.base_model, "update_and_allocate"):
        inner.base_model.update_and_allocate(step)


def trainable_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
