"""The training optimizer: AdamW on every row, or lazy AdamW on the rows of the batch.

An nn.Embedding takes a dense gradient by default, a [rows, dim] tensor that is zero outside
the batch, so every AdamW step reads and writes every row of every table and of its two
moments: O(users + items) per step however small the batch. With `sparse=True` on a table its
gradient holds only the batch's rows, and a lazy Adam (TF's LazyAdam, torch.optim.SparseAdam)
updates only those: their moments, their decoupled weight decay and their Adam step, with one
step count per parameter for the bias correction. A row outside the batch stays exactly as it
is; that its moments and decay advance only when it is seen is the approximation.

One optimizer serves both kinds of gradient, because a model mixes them: dense layers
(SASRec's blocks, a distillation projector) take dense gradients, and so does a table that is
read through `.weight` as well as by lookup (MF's full-softmax scores
`user_embedding(users) @ item_embedding.weight.T`): autograd adds the lookup's sparse gradient
to the dense one, which gives a dense tensor. Dense gradients go to torch's own fused AdamW,
so such parameters step exactly as they would under "dense".
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch
from torch import nn
from torch.optim.adamw import adamw

from distillrec.errors import DistillrecError
from distillrec.train import distributed


def make_optimizer(module: nn.Module, *, lr: float, weight_decay: float,
                   embedding_updates: Literal["dense", "sparse"] = "dense") -> torch.optim.Optimizer:
    """The optimizer of `module`'s parameters. "sparse" also switches every embedding table in
    `module` that can take a sparse gradient (nn.Embedding, nn.EmbeddingBag unless mode="max")
    to one, from its next forward on."""
    if embedding_updates == "dense":
        return torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    if embedding_updates != "sparse":
        raise ValueError(f"embedding_updates must be 'dense' or 'sparse', not {embedding_updates!r}")
    if distributed.is_distributed():
        # DistributedDataParallel fixes which gradients are sparse when it wraps the model, and
        # a table can take either kind (see above): not supported yet.
        raise DistillrecError("embedding_updates 'sparse' is single-process only; use 'dense' under torchrun")
    for layer in module.modules():
        if isinstance(layer, nn.Embedding) or (isinstance(layer, nn.EmbeddingBag) and layer.mode != "max"):
            layer.sparse = True
    return LazyAdamW(module.parameters(), lr=lr, weight_decay=weight_decay)


class LazyAdamW(torch.optim.Optimizer):
    """AdamW (non-amsgrad) for dense gradients, lazy AdamW for sparse ones (module docstring).
    Its state is AdamW's: a float32 `step` tensor, `exp_avg` and `exp_avg_sq` per parameter."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        # fused: dense gradients take AdamW's fused kernel; the key also has load_state_dict put
        # `step` on its parameter's device, as that kernel needs.
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "fused": True})

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            dense = []
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if param.grad.is_sparse:
                    _lazy_step(param, param.grad.coalesce(), state, group)
                else:
                    dense.append(param)
            if dense:
                _fused_adamw(dense, [param.grad for param in dense], [self.state[param] for param in dense], group)


def _fused_adamw(params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict], group: dict) -> None:
    """One call of AdamW's fused kernel on these tensors with the group's settings; it also
    advances each state's `step`."""
    beta1, beta2 = group["betas"]
    adamw(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
          [s["step"] for s in states], fused=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
          weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


def _lazy_step(param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
    """AdamW on the rows of a coalesced sparse gradient (each row once); no other row is read.
    The batch's rows of the weights and of both moments are gathered, stepped by AdamW's fused
    kernel (the dense path's arithmetic, in one pass instead of a dozen elementwise ops, which
    took most of a lazy step), and written back. The kernel advances the parameter's `step`."""
    rows, values = grad.indices()[0], grad.values()
    weights = param.index_select(0, rows)
    gathered = {"step": state["step"], "exp_avg": state["exp_avg"].index_select(0, rows),
                "exp_avg_sq": state["exp_avg_sq"].index_select(0, rows)}
    _fused_adamw([weights], [values.contiguous()], [gathered], group)
    state["exp_avg"].index_copy_(0, rows, gathered["exp_avg"])
    state["exp_avg_sq"].index_copy_(0, rows, gathered["exp_avg_sq"])
    param.index_copy_(0, rows, weights)
