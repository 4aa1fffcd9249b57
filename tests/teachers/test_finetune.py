"""LoRA / AdaLoRA on the bundled MiniLM: what is wrapped, what trains, what stays put."""

from __future__ import annotations

import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.teachers.finetune import (BERT_LINEAR_MODULES, apply_peft, load_sentence_transformer,
                                          trainable_parameters)

TEXTS = ["Toy Story (1995). Genres: Animation, Comedy.", "Heat (1995). Genres: Action, Crime."]


def _embed(st, texts) -> torch.Tensor:
    features = (getattr(st, "preprocess", None) or st.tokenize)(texts)
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


def test_lora_teacher_tunes_the_lm_for_a_bounded_number_of_steps(tmp_path):
    """End to end through the Trainer: LoRA moves only within its step budget, base weights stay,
    and the catalog's text embeddings are recomputed with the tuned LM before scoring."""
    import pandas as pd

    from distillrec.data.dataset import RawData, build_dataset
    from distillrec.data.splitting import random_split
    from distillrec.teachers.models import LMTeacher
    from distillrec.train.trainer import TrainConfig, Trainer

    rows = [(f"u{u}", f"i{(3 * u + j) % 12}", 4.0, j) for u in range(10) for j in range(7)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(12)], "title": [f"Film {i}" for i in range(12)]})
    dataset = build_dataset(RawData("tiny", inter, items=items))
    split = random_split(dataset, seed=0)
    model = LMTeacher.build(dataset, split, mode="lora", cache_dir=tmp_path, template="{title}.", dim=8,
                            hidden=16, lm_steps=2, lm_items_per_step=4, lora_r=2)
    before = {name: p.detach().clone() for name, p in model.language_model.named_parameters()}
    original_text = model.text_embeddings.clone()
    Trainer(model, split, TrainConfig(epochs=2, batch_size=16, lr=1e-2, eval_ks=(10,)), progress=False).fit()

    assert int(model.lm_steps_done) == 2  # 2 epochs x 4 batches, the LM only in the first 2 steps
    changed = {n for n, p in model.language_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in name for name in changed)
    assert not torch.allclose(model.text_embeddings, original_text)
    model.eval()
    fresh = model.item_text_embeddings(dataset.items)
    torch.testing.assert_close(model.text_embeddings, fresh)
