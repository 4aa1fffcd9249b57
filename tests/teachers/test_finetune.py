"""LoRA / AdaLoRA on the bundled MiniLM: what is wrapped, what trains, what stays put."""

from __future__ import annotations

import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.teachers.finetune import (BERT_LINEAR_MODULES, apply_peft, load_sentence_transformer,
                                          trainable_parameters)

TEXTS = ["Toy Story (1995). Genres: Animation, Comedy.", "Heat (1995). Genres: Action, Crime."]


def _embed(st, texts) -> torch.Tensor:
    features = st.tokenize(texts)
    return st(features)["sentence_embedding"]


def test_lora_wraps_exactly_the_target_modules():
    from peft.tuners.lora import LoraLayer

    st = apply_peft(load_sentence_transformer(), "lora", r=4, target_modules=("query", "value"))
    wrapped = {name.rsplit(".", 1)[-1] for name, module in st[0].model.named_modules()
               if isinstance(module, LoraLayer)}
    assert wrapped == {"query", "value"}
    n_layers = len([n for n, m in st[0].model.named_modules() if isinstance(m, LoraLayer)])
    assert n_layers == 2 * 6  # MiniLM-L6: one query and one value per layer
    trainable = [name for name, p in st.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_a_lora_step_changes_only_adapter_parameters():
    st = apply_peft(load_sentence_transformer(), "lora", r=4, dropout=0.0)
    st.train()
    optimizer = torch.optim.AdamW([p for p in st.parameters() if p.requires_grad], lr=1e-2)
    target = -_embed(st, TEXTS).detach()  # pull each embedding away from itself
    before = {name: p.detach().clone() for name, p in st.named_parameters()}
    for _ in range(2):  # LoRA's B starts at zero: the first step moves B, the second A too
        loss = ((_embed(st, TEXTS) - target) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {name for name, p in st.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all("lora_" in name for name in changed)
    assert any("lora_A" in name for name in changed) and any("lora_B" in name for name in changed)
    base = [name for name in before if "lora_" not in name]
    assert any("base_layer" in name for name in base)  # the wrapped Linear weights are among them


def test_adalora_needs_a_step_budget_and_full_model_has_all_linear_names():
    st = load_sentence_transformer()
    with pytest.raises(DistillrecError, match="total_steps"):
        apply_peft(st, "adalora")
    with pytest.raises(DistillrecError, match="not found"):
        apply_peft(st, "lora", target_modules=("q_proj",))
    with pytest.raises(DistillrecError, match="unknown PEFT method"):
        apply_peft(st, "prefix")
    assert set(BERT_LINEAR_MODULES) <= {n.rsplit(".", 1)[-1] for n, _ in st[0].model.named_modules()}
    adalora = apply_peft(load_sentence_transformer(), "adalora", r=4, total_steps=20)
    assert 0 < trainable_parameters(adalora) < 0.05 * sum(p.numel() for p in adalora.parameters())
