"""Initialise a student's ID embeddings from the teacher's user and item representations.

"pca": project the teacher's vectors onto their top principal directions, one basis shared by
users and items (fitted on both, stacked), so a student dot product u.i starts as the
teacher's score restricted to its d strongest directions. The basis is the truncated SVD of
the *uncentred* matrix: centring would add an item-dependent offset (i . mean) to every
score, which changes the teacher's rankings; for zero-mean representations the two coincide.
"projection": a linear map W (teacher dim -> student dim) fitted by least squares from the
teacher's vectors to the student's current embeddings, which are then replaced by teacher @ W.
On a freshly initialised student this keeps the init's scale but moves every row into the
teacher's geometry; on a trained student it keeps what the teacher can explain of it.

Either way each table is rescaled to the standard deviation its current values have, so the
optimiser sees the scale the student was designed for. Works alone or with any KD loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from distillrec.errors import DistillrecError

if TYPE_CHECKING:
    from distillrec.teachers.knowledge import Knowledge

INIT_METHODS = ("pca", "projection")


@torch.no_grad()
def init_from_teacher(student, knowledge: "Knowledge", method: str = "pca") -> dict:
    """Overwrite the student's ID embeddings from the teacher's; returns what was done:
    method, dimensions, the tables written, and the fraction of the teacher's variance (pca)
    or of the student's (projection) the result keeps."""
    if method not in INIT_METHODS:
        raise DistillrecError(f"unknown init {method!r}; expected one of: {', '.join(INIT_METHODS)}")
    tables = student.id_tables()  # the model says which tables it has (MF, towers, SASRec items)
    teacher = {side: knowledge.tensors[side].float() for side in tables}
    for side, table in tables.items():
        if len(table) != len(teacher[side]):
            raise DistillrecError(f"init: the student has {len(table)} {side}s, the teacher's knowledge "
                                  f"{len(teacher[side])}; build the student on the teacher's split")
    student_dim = next(iter(tables.values())).shape[1]
    teacher_dim = next(iter(teacher.values())).shape[1]
    if method == "pca":
        new, kept = _pca(teacher, student_dim)
    else:
        new, kept = _projection(teacher, tables)
    for side, table in tables.items():
        table.copy_(new[side] * (table.std() / new[side].std().clamp_min(1e-12)))
    return {"method": method, "tables": sorted(tables), "student_dim": student_dim, "teacher_dim": teacher_dim,
            "explained_variance" if method == "pca" else "r2": kept}


def _pca(teacher: dict[str, torch.Tensor], dim: int) -> tuple[dict[str, torch.Tensor], float]:
    """Teacher vectors in the top-`dim` right singular directions of the stacked tables."""
    stacked = torch.cat(list(teacher.values()))
    if dim > min(stacked.shape):
        raise DistillrecError(f"init pca: the student dimension {dim} exceeds what the teacher's "
                              f"{tuple(stacked.shape)} representations span")
    _, singular, basis_t = torch.linalg.svd(stacked, full_matrices=False)
    basis = basis_t[:dim].T                                          # [teacher_dim, dim]
    energy = singular.pow(2)
    explained = float(energy[:dim].sum() / energy.sum())
    return {side: vectors @ basis for side, vectors in teacher.items()}, explained


def _projection(teacher: dict[str, torch.Tensor],
                tables: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
    """Least-squares W with [teacher] @ W ~ [student] over both tables stacked; returns teacher @ W."""
    source = torch.cat([teacher[side] for side in tables])
    target = torch.cat([tables[side].float() for side in tables])
    weights = torch.linalg.lstsq(source, target).solution            # [teacher_dim, student_dim]
    fitted = source @ weights
    r2 = float(1 - (target - fitted).pow(2).sum() / (target - target.mean(0)).pow(2).sum())
    return {side: teacher[side] @ weights for side in tables}, r2
