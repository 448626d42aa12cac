"""PEAC's loss: POPAR (order + restoration) plus global and local consistency with an EMA teacher.

The training loop of the official ``global_local_popar_swin.py`` (Zhou et al., BMVC 2023) runs four
forward passes, student(view 1, corrupted), teacher(view 2), student(view 2), teacher(view 1,
corrupted), and minimises::

    L_order   = CE(order_logits_s(view 1), perm)                     # every token, k*k-way
    L_restore = MSE(restoration_s(view 1), clean view 1)
    g         = L2-normalise(global embedding)
    L_global  = MSE(g1_s, g2_t) + MSE(g2_s, g1_t)                    # symmetric
    L_local   = (MSE(l1_s[M1], l2_t[M2]) + MSE(l1_t[M1], l2_s[M2])) / 2
                # local embeddings NOT normalised, un-shuffled samples only, matched tokens M1 <-> M2
    L = 1 * L_order + 1 * L_restore + 1e5 * L_global + 1 * L_local

With unit vectors of ``D`` dimensions, ``MSE = (2 - 2 cos) / D`` per sample, so the global term is a
symmetric cosine loss (no predictor). Teacher outputs are targets (detached here; the official code
freezes the teacher instead, which gives the same gradients).

Such a loss is minimised by a constant output (collapse): nothing in it keeps different radiographs
apart but the POPAR terms (BYOL, Grill et al., NeurIPS 2020, needs its predictor for that; without
one it collapses). :func:`embedding_spread` is the collapse monitor of SimSiam (Chen and He, CVPR
2021), logged with the loss terms for the student's global embeddings and backbone tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PEACLossWeights:
    """Weights of the four terms (official: 1, 1, 1e5, 1)."""

    order: float = 1.0
    restoration: float = 1.0
    global_: float = 1e5
    local: float = 1.0


def global_consistency(student1: torch.Tensor, student2: torch.Tensor, teacher1: torch.Tensor,
                       teacher2: torch.Tensor) -> torch.Tensor:
    """``MSE(n(s1), n(t2)) + MSE(n(s2), n(t1))`` of L2-normalised ``(B, D)`` embeddings (teacher detached)."""
    n = lambda v: F.normalize(v.float(), dim=1)  # noqa: E731
    return F.mse_loss(n(student1), n(teacher2).detach()) + F.mse_loss(n(student2), n(teacher1).detach())


def local_consistency(student1: torch.Tensor, student2: torch.Tensor, teacher1: torch.Tensor, teacher2: torch.Tensor,
                      mask1: torch.Tensor, mask2: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``(MSE(s1[M1], t2[M2]) + MSE(t1[M1], s2[M2])) / 2`` over the matched tokens of the kept samples.

    Args:
        student1, student2, teacher1, teacher2: ``(B, N, D)`` local embeddings of view 1 / view 2.
        mask1, mask2: bool ``(B, N)`` overlap masks (:func:`~semantic_genesis.transforms.grid_views.
            overlap_masks`); row ``i`` selects the same number of tokens in both.
        keep: bool ``(B,)`` the samples that take part (PEAC: the un-shuffled ones).

    Returns:
        A float32 scalar; 0 (still connected to the graph) when no sample is kept.
    """
    keep = keep.to(student1.device)
    if not bool(keep.any()):
        return student1.float().sum() * 0.0
    m1 = (mask1.to(student1.device) & keep[:, None])
    m2 = (mask2.to(student1.device) & keep[:, None])
    s1, t1 = student1.float()[m1], teacher1.float()[m1].detach()
    s2, t2 = student2.float()[m2], teacher2.float()[m2].detach()
    return 0.5 * (F.mse_loss(s1, t2) + F.mse_loss(t1, s2))


def embedding_spread(x: torch.Tensor) -> torch.Tensor:
    """How far apart the rows of ``x (M, D)`` are: the standard deviation over the rows of the
    L2-normalised vectors, averaged over the ``D`` channels and multiplied by ``sqrt(D)``.

    About 1 for vectors spread like random directions, 0 when every row is the same vector (collapse;
    the monitor of SimSiam, Chen and He, CVPR 2021, without their ``1 / sqrt(D)``). Returns a detached
    float32 scalar (0 for fewer than two rows).
    """
    x = x.detach().float().reshape(-1, x.shape[-1])
    if len(x) < 2:
        return x.new_zeros(())
    return F.normalize(x, dim=1).std(dim=0).mean() * x.shape[1] ** 0.5


def peac_loss(student1, student2, teacher1, teacher2, perm: torch.Tensor, restoration_target: torch.Tensor,
              mask1: torch.Tensor, mask2: torch.Tensor, shuffled: torch.Tensor,
              weights: PEACLossWeights = PEACLossWeights()) -> dict[str, torch.Tensor]:
    """The PEAC loss of one batch.

    Args:
        student1, student2, teacher1, teacher2: :class:`~semantic_genesis.models.peac.PEACOutput` of the
            student / teacher on view 1 (POPAR-corrupted) and view 2 (clean).
        perm: int64 ``(B, N)`` order targets.
        restoration_target: ``(B, C, H, W)`` the clean, un-permuted view 1.
        mask1, mask2: bool ``(B, N)`` overlap masks.
        shuffled: bool ``(B,)`` order samples (left out of the local loss).
        weights: the term weights.

    Returns:
        ``{"loss", "order", "restoration", "global", "local", "order_accuracy", "global_spread",
        "token_spread"}``: float32 scalars; ``"loss"`` is the weighted sum, the next four the unweighted
        terms; the last three are detached measurements: the order accuracy in [0, 1] and the
        :func:`embedding_spread` of the student's global embeddings (both views, ``2B`` rows) and of its
        backbone tokens (every token of both views), near 0 when the student has collapsed.
    """
    logits = student1.order_logits.float()
    order = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), perm.reshape(-1))
    restoration = F.mse_loss(student1.restoration.float(), restoration_target.float())
    glob = global_consistency(student1.global_embedding, student2.global_embedding,
                              teacher1.global_embedding, teacher2.global_embedding)
    local = local_consistency(student1.local_embedding, student2.local_embedding, teacher1.local_embedding,
                              teacher2.local_embedding, mask1, mask2, ~shuffled)
    total = (weights.order * order + weights.restoration * restoration + weights.global_ * glob
             + weights.local * local)
    accuracy = (logits.detach().argmax(dim=-1) == perm).float().mean()
    return {"loss": total, "order": order, "restoration": restoration, "global": glob, "local": local,
            "order_accuracy": accuracy,
            "global_spread": embedding_spread(torch.cat([student1.global_embedding, student2.global_embedding])),
            "token_spread": embedding_spread(torch.cat([student1.tokens, student2.tokens]))}
