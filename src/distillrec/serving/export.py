"""ONNX graphs of a student's scoring towers, so the service encodes users and items without
rebuilding the PyTorch model.

MF: `user_tower` and `item_tower` are the embedding lookups (index -> vector).
Two-tower: `user_tower` / `item_tower` take the ID, whether that ID was trained, and the
feature index tensors (plus content rows when the item tower has a content slot) and give the
tower's output vector; a new user or item passes has_id = false and its features only.
Content student: the same, plus the hashed title n-grams (`title_tokens`, item tower) and the
pooled history vector (`content`: mean of the history items' raw vectors, user tower).
Each graph's input names, in order, are recorded in the bundle manifest.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from distillrec.errors import DistillrecError

OPSET = 17


class _Lookup(nn.Module):
    def __init__(self, table: nn.Embedding):
        super().__init__()
        self.table = table

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table(index)


class _MeanBag(nn.Module):
    """EmbeddingBag(mode="mean", padding_idx=0) in plain ops: the ONNX exporter refuses a
    bag with padding_idx. Padding is left out of the mean; an all-padding row gives zeros."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = weight

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        present = (index != 0).unsqueeze(-1).to(self.weight.dtype)
        total = (self.weight[index] * present).sum(dim=1)
        return total / present.sum(dim=1).clamp(min=1.0)


class _TowerGraph(nn.Module):
    """A two-tower Tower with flat positional inputs (ONNX has no dict inputs)."""

    def __init__(self, tower, feature_names: list[str], has_content: bool):
        super().__init__()
        tower = copy.deepcopy(tower)
        for name, table in tower.features.tables.items():
            if isinstance(table, nn.EmbeddingBag):
                tower.features.tables[name] = _MeanBag(table.weight)
        self.tower, self.feature_names, self.has_content = tower, feature_names, has_content

    def forward(self, ids, has_id, *rest):
        features = dict(zip(self.feature_names, rest[:len(self.feature_names)]))
        content = rest[len(self.feature_names)] if self.has_content else None
        return self.tower(features, content, ids=ids, has_id=has_id)


class _TitleTowerGraph(_TowerGraph):
    """The content student's item tower: hashed title n-grams -> mean bag -> the content slot."""

    def __init__(self, tower, feature_names: list[str], text: nn.EmbeddingBag):
        super().__init__(tower, feature_names, has_content=True)
        self.text = _MeanBag(text.weight)

    def forward(self, ids, has_id, *rest):
        return super().forward(ids, has_id, *rest[:-1], self.text(rest[-1]))


def tower_graphs(model, name: str) -> dict[str, tuple[nn.Module, dict[str, torch.Tensor]]]:
    """{graph name: (module, example inputs by input name)} for a supported student."""
    if name == "mf":
        example = torch.tensor([0, 1], dtype=torch.long)
        return {"user_tower": (_Lookup(model.user_embedding), {"user": example}),
                "item_tower": (_Lookup(model.item_embedding), {"item": example})}
    if name == "two-tower":
        users = torch.tensor([0, 1])
        items = torch.tensor([0, 1])
        user_inputs = {"ids": users, "has_id": model.user_has_id[users], **model.user_table.rows(users)}
        item_inputs = {"ids": items, "has_id": model.item_has_id[items], **model.item_table.rows(items)}
        has_content = model.content is not None
        if has_content:
            item_inputs["content"] = model.content[items]
        return {"user_tower": (_TowerGraph(model.user_tower, model.user_table.names, False), user_inputs),
                "item_tower": (_TowerGraph(model.item_tower, model.item_table.names, has_content), item_inputs)}
    if name == "content":
        users, items = torch.tensor([0, 1]), torch.tensor([0, 1])
        user_inputs = {"ids": users, "has_id": model.user_has_id[users], **model.user_table.rows(users)}
        if model.uses_history:
            user_inputs["content"] = torch.zeros(2, model.user_tower.content.in_features)
        item_inputs = {"ids": items, "has_id": model.item_has_id[items], **model.item_table.rows(items),
                       "title_tokens": model.title_tokens[items]}
        return {"user_tower": (_TowerGraph(model.user_tower, model.user_table.names, model.uses_history), user_inputs),
                "item_tower": (_TitleTowerGraph(model.item_tower, model.item_table.names, model.text), item_inputs)}
    raise DistillrecError(f"ONNX export supports the mf, two-tower and content students, not {name!r}")


def export_towers(model, name: str, directory: Path) -> dict[str, list[str]]:
    """Write one .onnx file per tower into `directory`; returns {graph: input names}."""
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    inputs_by_graph = {}
    for graph, (module, example) in tower_graphs(model, name).items():
        names = list(example)
        # Batch (and the multi-valued features' width) vary at serving time.
        axes = {n: {0: "batch", **({1: f"{n}_width"} if t.dim() == 2 and n != "content" else {})}
                for n, t in example.items()}
        axes["vector"] = {0: "batch"}
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter: the dynamo one needs onnxscript, which nothing else uses.
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), tuple(example.values()), str(directory / f"{graph}.onnx"),
                              input_names=names, output_names=["vector"], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
        inputs_by_graph[graph] = names
    return inputs_by_graph


class OnnxTower:
    """One exported tower run by onnxruntime (single-threaded: requests are small)."""

    def __init__(self, path: Path, input_names: list[str]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = input_names
        self._types = {i.name: i.type for i in self.session.get_inputs()}

    def __call__(self, **inputs):
        import numpy as np

        feed = {}
        for name in self.input_names:
            value = np.asarray(inputs[name])
            kind = self._types.get(name, "")
            feed[name] = value.astype(bool if "bool" in kind else np.int64 if "int64" in kind else np.float32)
        return self.session.run(["vector"], {k: v for k, v in feed.items() if k in self._types})[0]
