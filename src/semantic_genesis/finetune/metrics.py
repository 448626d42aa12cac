"""Target-task metrics: ROC AUC for classification, Dice and IoU at a threshold for segmentation.

The papers report AUC for NCC and IoU for NCS, LCS and BMS (Semantic Genesis, Table 1 and 2); the
official Keras fine-tuning code computes the test AUC with scikit-learn's ``roc_curve`` + ``auc`` and
Dice / IoU at threshold 0.5 (reference §4.3). These functions compute the same quantities on tensors
of any device (they reduce to a few sums and one sort) and are tested against scikit-learn's
``roc_auc_score`` and MONAI's ``compute_dice`` / ``compute_iou``.
"""

from __future__ import annotations

import math

import torch

from semantic_genesis.errors import DataError


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve of binary ``scores`` for ``labels``.

    Computed as the normalised Mann-Whitney U statistic with average ranks for tied scores, which
    equals the trapezoidal area under the ROC curve (scikit-learn's ``roc_auc_score``) exactly.

    Args:
        scores: ``(N,)`` real scores (probabilities or logits; only their order matters).
        labels: ``(N,)`` binary labels (0/1 or bool).

    Returns:
        The AUC in [0, 1].

    Raises:
        DataError: shapes differ, labels are not binary, or only one class is present (AUC undefined).
    """
    s = _as_tensor(scores).detach().reshape(-1).to(torch.float64)
    y = _as_tensor(labels).detach().reshape(-1)
    if s.numel() != y.numel():
        raise DataError(f"roc_auc: {s.numel()} scores but {y.numel()} labels")
    if not bool(torch.isfinite(s).all()):
        raise DataError("roc_auc: scores contain NaN or inf")
    y = y.to(s.device)
    if not bool(((y == 0) | (y == 1)).all()):
        raise DataError(f"roc_auc: labels must be 0 or 1, got values {torch.unique(y).tolist()[:5]}")
    pos = y == 1
    n_pos = int(pos.sum())
    n_neg = int(y.numel() - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"roc_auc: needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = _average_ranks(s)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``values`` (1D) with ties given their average rank (``scipy.stats.rankdata``)."""
    order = torch.argsort(values, stable=True)
    sorted_vals = values[order]
    n = values.numel()
    # Group boundaries of runs of equal values in the sorted order.
    new_group = torch.ones(n, dtype=torch.bool, device=values.device)
    new_group[1:] = sorted_vals[1:] != sorted_vals[:-1]
    group_id = torch.cumsum(new_group.to(torch.int64), 0) - 1
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=values.device)
    n_groups = int(group_id[-1]) + 1
    sums = torch.zeros(n_groups, dtype=torch.float64, device=values.device).index_add_(0, group_id, positions)
    counts = torch.zeros(n_groups, dtype=torch.float64, device=values.device).index_add_(
        0, group_id, torch.ones_like(positions)
    )
    ranks = torch.empty(n, dtype=torch.float64, device=values.device)
    ranks[order] = (sums / counts)[group_id]
    return ranks


def _binarise(pred: torch.Tensor, target: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    pred = _as_tensor(pred).detach()
    target = _as_tensor(target).detach()
    if pred.shape != target.shape:
        raise DataError(f"segmentation metric: prediction shape {tuple(pred.shape)} != target {tuple(target.shape)}")
    if pred.dim() < 2:
        raise DataError(f"segmentation metric: expected (B, ...) tensors, got shape {tuple(pred.shape)}")
    b = pred.shape[0]
    p = (pred.reshape(b, -1) >= threshold).to(torch.float64) if pred.is_floating_point() else (pred.reshape(b, -1) > 0).to(torch.float64)
    t = (target.reshape(b, -1).to(pred.device) > 0.5).to(torch.float64)
    return p, t


def _overlap(pred, target, threshold: float, ignore_empty: bool, kind: str) -> torch.Tensor:
    p, t = _binarise(pred, target, threshold)
    inter = (p * t).sum(1)
    sum_p = p.sum(1)
    sum_t = t.sum(1)
    denom = sum_p + sum_t if kind == "dice" else sum_p + sum_t - inter
    num = 2.0 * inter if kind == "dice" else inter
    score = num / denom.clamp_min(1e-12)
    empty_t = sum_t == 0
    # MONAI convention for empty ground truth: NaN (ignored) or 1 if the prediction is empty too, else 0.
    empty_value = torch.where(sum_p == 0, torch.ones_like(score), torch.zeros_like(score))
    if ignore_empty:
        empty_value = torch.full_like(score, math.nan)
    return torch.where(empty_t, empty_value, score)


def dice_per_case(pred, target, threshold: float = 0.5, ignore_empty: bool = False) -> torch.Tensor:
    """Dice coefficient ``2|P∩T| / (|P| + |T|)`` of each case of a batch.

    Args:
        pred: ``(B, ...)`` probabilities in [0, 1] (binarised with ``>= threshold``), or an integer /
            bool mask (non-zero = foreground).
        target: ``(B, ...)`` binary ground truth (non-zero = foreground), same shape.
        threshold: probability threshold (0.5 as in the official evaluation).
        ignore_empty: cases with empty ground truth are NaN if True (MONAI ``ignore_empty=True``), else 1
            when the prediction is empty too and 0 otherwise (MONAI ``ignore_empty=False``).

    Returns:
        ``(B,)`` float64 Dice per case.
    """
    return _overlap(pred, target, threshold, ignore_empty, "dice")


def iou_per_case(pred, target, threshold: float = 0.5, ignore_empty: bool = False) -> torch.Tensor:
    """Intersection over union ``|P∩T| / |P∪T|`` of each case; arguments as :func:`dice_per_case`."""
    return _overlap(pred, target, threshold, ignore_empty, "iou")


def _nanmean(values: torch.Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else math.nan


def dice(pred, target, threshold: float = 0.5, ignore_empty: bool = False) -> float:
    """Mean of :func:`dice_per_case` over the batch (NaN cases skipped, as MONAI's ``mean`` reduction)."""
    return _nanmean(dice_per_case(pred, target, threshold, ignore_empty))


def iou(pred, target, threshold: float = 0.5, ignore_empty: bool = False) -> float:
    """Mean of :func:`iou_per_case` over the batch (NaN cases skipped)."""
    return _nanmean(iou_per_case(pred, target, threshold, ignore_empty))


#: Whether a larger value of each metric is better (all of ours are).
HIGHER_IS_BETTER = {"auc": True, "dice": True, "iou": True}
