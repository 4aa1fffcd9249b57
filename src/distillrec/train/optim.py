"""The training optimizer: AdamW on every row, or lazy AdamW on the rows of the batch.

An nn.Embedding takes a dense gradient by default, a [rows, dim] tensor that is zero outside
the batch, so every AdamW step reads and writes every row of every table and of its two
moments: O(users + items) per step however small the batch. With `sparse=True` on a table its
gradient holds only the batch's rows, and a lazy Adam (TF's LazyAdam, torch.optim.SparseAdam)
updates only those, with one step count per parameter for the bias correction.

A plain lazy Adam is not AdamW, though: under AdamW a row outside the batch still decays and
keeps moving along its momentum (about ten steps' worth with the usual betas), and rare rows,
which are outside most batches, lose both; tuned, that cost 2.6% NDCG@10 on ML-100K. So each
row remembers the step it was last brought up to date (`row_step`), and when it is next
stepped, or when `catch_up()` brings every row up to date (the trainer calls it after each
epoch, before validation and the checkpoint), the steps it skipped are applied in closed form:
with a zero gradient, d = 1 - lr * weight_decay and q = beta1 / sqrt(beta2), s skipped steps
take the weights w to w * d**s - a * q * (d**s - q**s) / (d - q) * m / (sqrt(v) + eps) and the
moments to m * beta1**s, v * beta2**s, where a is the step size. The two approximations: eps
is scaled with sqrt(v) (it is 1e-8 against sqrt(v)), and the bias correction is that of the
first skipped step (the one that weighs most), not of each.

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
    """AdamW (non-amsgrad) for dense gradients, lazy AdamW with catch-up for sparse ones (module
    docstring). Its state is AdamW's, a float32 `step` tensor, `exp_avg` and `exp_avg_sq` per
    parameter, plus `row_step` (float32, one per row) for a parameter that took sparse gradients."""

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

    @torch.no_grad()
    def catch_up(self) -> None:
        """Apply to every row the steps it skipped, so the weights are AdamW's (up to the
        approximations above) wherever they are read: validation, a checkpoint, an export.
        O(rows) once; afterwards every row is up to date."""
        for group in self.param_groups:
            for param in group["params"]:
                state = self.state.get(param)
                if state and "row_step" in state:
                    _skip(param, state["exp_avg"], state["exp_avg_sq"], state["row_step"], state["step"], group)
                    state["row_step"].copy_(state["step"].expand_as(state["row_step"]))


def _fused_adamw(params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict], group: dict) -> None:
    """One call of AdamW's fused kernel on these tensors with the group's settings; it also
    advances each state's `step`."""
    beta1, beta2 = group["betas"]
    adamw(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
          [s["step"] for s in states], fused=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
          weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


def _lazy_step(param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
    """AdamW on the rows of a coalesced sparse gradient (each row once); no other row is read.
    The batch's rows of the weights and of both moments are gathered, brought up to date (the
    steps each skipped since it was last stepped), stepped by AdamW's fused kernel (the dense
    path's arithmetic, in one pass instead of a dozen elementwise ops, which took most of a lazy
    step), and written back. The kernel advances the parameter's `step`."""
    if "row_step" not in state:
        # Rows before the first sparse step (or in a checkpoint from before catch-up) count as up to date.
        state["row_step"] = state["step"].expand(param.shape[0]).clone()
    rows, values = grad.indices()[0], grad.values()
    weights = param.index_select(0, rows)
    gathered = {"step": state["step"], "exp_avg": state["exp_avg"].index_select(0, rows),
                "exp_avg_sq": state["exp_avg_sq"].index_select(0, rows)}
    _skip(weights, gathered["exp_avg"], gathered["exp_avg_sq"], state["row_step"].index_select(0, rows),
          state["step"], group)
    _fused_adamw([weights], [values.contiguous()], [gathered], group)
    state["exp_avg"].index_copy_(0, rows, gathered["exp_avg"])
    state["exp_avg_sq"].index_copy_(0, rows, gathered["exp_avg_sq"])
    param.index_copy_(0, rows, weights)
    state["row_step"].index_fill_(0, rows, float(state["step"]))


def _skip(weights: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, row_step: torch.Tensor,
          step: torch.Tensor, group: dict) -> None:
    """In place: the AdamW steps with a zero gradient that rows last up to date at `row_step`
    skipped until `step`, in closed form (module docstring)."""
    beta1, beta2 = group["betas"]
    decay, ratio = 1.0 - group["lr"] * group["weight_decay"], beta1 / beta2 ** 0.5
    skipped = (step - row_step).unsqueeze(1)
    decayed, faded = decay ** skipped, ratio ** skipped
    # The sum over the skipped steps j = 1..s of ratio**j * decay**(s - j), a geometric series.
    if abs(decay - ratio) > 1e-6:
        moved = ratio * (decayed - faded) / (decay - ratio)
    else:
        moved = skipped * faded
    first = row_step.unsqueeze(1) + 1  # the first skipped step
    step_size = group["lr"] / (1.0 - beta1 ** first)
    denom = exp_avg_sq.sqrt().div_((1.0 - beta2 ** first).sqrt()).add_(group["eps"])
    weights.mul_(decayed).addcdiv_(exp_avg * (moved * step_size), denom, value=-1.0)
    exp_avg.mul_(beta1 ** skipped)
    exp_avg_sq.mul_(beta2 ** skipped)
