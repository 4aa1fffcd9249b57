"""ONNX graphs of a student's scoring towers, so the service encodes users and items without
rebuilding the PyTorch model.

Each model says what its towers are (`Recommender.export_graphs`: MF's embedding lookups; the
feature towers of the two-tower and content students, where a new user or item passes
has_id = false and its features only). Each graph's input names, in order, are recorded in
the bundle manifest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

OPSET = 17


def export_towers(model, directory: Path) -> dict[str, list[str]]:
    """Write one .onnx file per tower of `model.export_graphs()` into `directory`; returns
    {graph: input names}."""
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    inputs_by_graph = {}
    for graph, (module, example) in model.export_graphs().items():
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
