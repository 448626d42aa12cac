"""Target-task metrics: ROC AUC for classification, Dice and IoU at a threshold for segmentation.

The papers report AUC for NCC and IoU for NCS, LCS and BMS (Semantic Genesis, Table 1 and 2); the
official Keras fine-tuning code (Models Genesis ``keras/downstream_tasks/utils.py``) computes the test
AUC with scikit-learn's ``roc_curve`` + ``auc`` and Dice / IoU at threshold 0.5.

What MONAI has is computed by MONAI: :func:`roc_auc` wraps ``monai.metrics.compute_roc_auc`` (raising a
one-line error where MONAI would return NaN), :func:`dice_per_case` / :func:`iou_per_case` wrap
``compute_dice`` / ``compute_iou``. MONAI has no pooled IoU / Dice and no Keras ``mean_iou``; those
are ours (:func:`iou_pooled`, :func:`dice_pooled`, :func:`keras_mean_iou`, and their confusion-count
forms :func:`overlap_counts` / :func:`scores_from_counts` used by the fine-tuning loop) and are tested
against scikit-learn's ``jaccard_score`` / ``f1_score`` on the flattened voxels and MONAI per case.

**Which IoU** (``finetune.iou``, :data:`IOU_DEFINITIONS`). The papers do not say how IoU is averaged;
the official code prints two numbers for a test set:

* ``pooled`` (default; the official ``iou(p, y)``): ``sum |P ∩ T| / sum |P ∪ T|`` over *all* test voxels
  at once, so large objects weigh more. Use it to compare with Table 2.
* ``keras``: the Keras metric ``mean_iou``, TensorFlow's two-class (background and foreground) mean
  IoU of the confusion matrix, averaged over the thresholds 0.5, 0.55, ..., 0.95 (``p > t``). Computed
  here over the whole test set at once; Keras' running average over evaluation batches, which
  depends on the batch order, is not reproduced.
* ``per_case``: the mean of per-volume (per-crop) IoU, MONAI's convention; every case weighs the same,
  so small objects pull it down. On 50 spheres of radius 1.75..12 voxels predicted 2 voxels off,
  per-case IoU is 0.590 and pooled IoU 0.720 (tests/finetune/test_metrics.py).

Dice follows the same choice (pooled or per case; with ``keras`` the pooled binary Dice, the official
``[BIN] Dice``). :func:`segmentation_scores` is the one scoring entry point of the fine-tuning loop.
"""

from __future__ import annotations

import math

import torch

from semantic_genesis.errors import DataError


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve of binary ``scores`` for ``labels``, by MONAI's ``compute_roc_auc``.

    MONAI's ``compute_roc_auc`` (tied scores share their pairs, equal to scikit-learn's trapezoidal
    ``roc_auc_score``) computes the value. This wrapper only validates the input first: where MONAI
    warns and returns NaN (one class only, labels other than 0/1), or scores NaN pairs silently, we
    raise a :class:`~semantic_genesis.errors.DataError` that says why, so that a test set without
    positives never reaches a results table as a NaN.

    Args:
        scores: ``(N,)`` real scores (probabilities or logits; only their order matters).
        labels: ``(N,)`` binary labels (0/1 or bool).

    Returns:
        The AUC in [0, 1].

    Raises:
        DataError: shapes differ, scores are not finite, labels are not binary, or only one class is
            present (AUC undefined).
    """
    from monai.metrics import compute_roc_auc

    s = _as_tensor(scores).detach().reshape(-1).to(torch.float64)
    y = _as_tensor(labels).detach().reshape(-1)
    if s.numel() != y.numel():
        raise DataError(f"roc_auc: {s.numel()} scores but {y.numel()} labels")
    if not bool(torch.isfinite(s).all()):
        raise DataError("roc_auc: scores contain NaN or inf")
    y = y.to(s.device)
    if not bool(((y == 0) | (y == 1)).all()):
        raise DataError(f"roc_auc: labels must be 0 or 1, got values {torch.unique(y).tolist()[:5]}")
    n_pos = int((y == 1).sum())
    n_neg = int(y.numel() - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"roc_auc: needs both classes, got {n_pos} positives and {n_neg} negatives")
    return float(compute_roc_auc(s.cpu(), y.cpu().to(torch.int64)))


def per_label_auc(scores, labels, names) -> dict[str, float]:
    """ROC AUC of each label of a multi-label classifier, and their mean (``auc``).

    Each label is scored over all samples (:func:`roc_auc`). A label whose samples are all of one
    class (no positives, or no negatives, in the set) has no AUC: it is recorded as NaN (``n/a`` in
    tables) and left out of the mean, never counted as 0.5. The mean is over the labels that have an
    AUC, as CheXNet / the Semantic Genesis DXC task report it.

    Args:
        scores: ``(N, C)`` real scores (logits or probabilities).
        labels: ``(N, C)`` binary labels.
        names: the ``C`` label names.

    Returns:
        ``{"auc": mean, "auc/<name>": AUC or NaN for every label}``.

    Raises:
        DataError: shapes do not fit, or no label has both classes (the mean is undefined).
    """
    s = _as_tensor(scores).detach().to(torch.float64)
    y = _as_tensor(labels).detach()
    names = list(names)
    if s.ndim != 2 or tuple(s.shape) != tuple(y.shape) or s.shape[1] != len(names):
        raise DataError(f"per-label AUC: scores {tuple(s.shape)} and labels {tuple(y.shape)} must both be (N, {len(names)})")
    result: dict[str, float] = {}
    for k, name in enumerate(names):
        column = y[:, k]
        positives = int((column == 1).sum())
        if positives == 0 or positives == column.numel():
            result[f"auc/{name}"] = math.nan
        else:
            result[f"auc/{name}"] = roc_auc(s[:, k], column)
    defined = [v for v in result.values() if not math.isnan(v)]
    if not defined:
        raise DataError(f"per-label AUC: none of the {len(names)} labels has both positives and negatives among "
                        f"the {s.shape[0]} samples")
    return {"auc": float(sum(defined) / len(defined)), **result}


def _binarise(pred, target, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 1, N)`` float64 binary prediction (``p >= threshold``; integer masks: non-zero) and target (``> 0.5``)."""
    pred = _as_tensor(pred).detach()
    target = _as_tensor(target).detach()
    if pred.shape != target.shape:
        raise DataError(f"segmentation metric: prediction shape {tuple(pred.shape)} != target {tuple(target.shape)}")
    if pred.dim() < 2:
        raise DataError(f"segmentation metric: expected (B, ...) tensors, got shape {tuple(pred.shape)}")
    b = pred.shape[0]
    flat = pred.reshape(b, 1, -1)
    p = (flat >= threshold) if pred.is_floating_point() else (flat > 0)
    t = target.reshape(b, 1, -1).to(pred.device) > 0.5
    return p.to(torch.float64), t.to(torch.float64)


def dice_per_case(pred, target, threshold: float = 0.5, ignore_empty: bool = False) -> torch.Tensor:
    """Dice coefficient ``2|P∩T| / (|P| + |T|)`` of each case of a batch, by MONAI's ``compute_dice``.

    The cases are flattened to one channel and passed to ``monai.metrics.compute_dice``
    (``include_background=True``), whose empty-mask conventions are ours.

    Args:
        pred: ``(B, ...)`` probabilities in [0, 1] (binarised with ``>= threshold``), or an integer /
            bool mask (non-zero = foreground).
        target: ``(B, ...)`` binary ground truth (non-zero = foreground), same shape.
        threshold: probability threshold (0.5 as in the official evaluation).
        ignore_empty: cases with empty ground truth are NaN if True (MONAI ``ignore_empty=True``), else 1
            when the prediction is empty too and 0 otherwise (MONAI ``ignore_empty=False``; the
            official ``empty_score`` = 1.0 of two empty masks).

    Returns:
        ``(B,)`` Dice per case as float64 (MONAI computes it in float32: ~1e-7 relative rounding).
    """
    from monai.metrics import compute_dice

    p, t = _binarise(pred, target, threshold)
    return compute_dice(p, t, include_background=True, ignore_empty=ignore_empty)[:, 0].to(torch.float64)


def iou_per_case(pred, target, threshold: float = 0.5, ignore_empty: bool = False) -> torch.Tensor:
    """Intersection over union ``|P∩T| / |P∪T|`` of each case, by MONAI's ``compute_iou``.

    Arguments and empty-mask conventions as :func:`dice_per_case`.
    """
    from monai.metrics import compute_iou

    p, t = _binarise(pred, target, threshold)
    return compute_iou(p, t, include_background=True, ignore_empty=ignore_empty)[:, 0].to(torch.float64)


def _nanmean(values: torch.Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else math.nan


def dice(pred, target, threshold: float = 0.5, ignore_empty: bool = False) -> float:
    """Mean of :func:`dice_per_case` over the batch (NaN cases skipped, as MONAI's ``mean`` reduction)."""
    return _nanmean(dice_per_case(pred, target, threshold, ignore_empty))


def iou(pred, target, threshold: float = 0.5, ignore_empty: bool = False) -> float:
    """Mean of :func:`iou_per_case` over the batch (NaN cases skipped)."""
    return _nanmean(iou_per_case(pred, target, threshold, ignore_empty))


def _flat_binary(probs, targets, threshold: float, strict: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate cases into two flat bool vectors: prediction ``p >= threshold`` (``>`` if strict), target ``> 0.5``."""
    preds, truths = [], []
    if len(probs) != len(targets):
        raise DataError(f"segmentation metric: {len(probs)} predictions but {len(targets)} targets")
    if not len(probs):
        raise DataError("segmentation metric: no cases to score")
    for p, t in zip(probs, targets):
        p, t = _as_tensor(p).detach(), _as_tensor(t).detach()
        if p.shape != t.shape:
            raise DataError(f"segmentation metric: prediction shape {tuple(p.shape)} != target {tuple(t.shape)}")
        if p.is_floating_point():
            preds.append((p > threshold if strict else p >= threshold).reshape(-1))
        else:
            preds.append((p > 0).reshape(-1))
        truths.append((t.to(p.device) > 0.5).reshape(-1))
    return torch.cat(preds), torch.cat(truths)


def iou_pooled(probs, targets, threshold: float = 0.5) -> float:
    """IoU pooled over all voxels of all cases, ``sum |P ∩ T| / sum |P ∪ T|`` (the official ``iou``).

    Args:
        probs: sequence of per-case probability (or binary) arrays/tensors, any shapes.
        targets: the matching binary ground truths (same shapes).
        threshold: foreground is ``p >= threshold``.

    Returns:
        IoU in [0, 1]; 1.0 when prediction and ground truth are both empty everywhere.
    """
    p, t = _flat_binary(probs, targets, threshold)
    union = int((p | t).sum())
    return float((p & t).sum()) / union if union else 1.0


def dice_pooled(probs, targets, threshold: float = 0.5) -> float:
    """Dice pooled over all voxels of all cases, ``2 sum |P ∩ T| / (sum |P| + sum |T|)`` (official ``dice``).

    Arguments as :func:`iou_pooled`; 1.0 when both are empty (the official ``empty_score``).
    """
    p, t = _flat_binary(probs, targets, threshold)
    total = int(p.sum()) + int(t.sum())
    return 2.0 * float((p & t).sum()) / total if total else 1.0


#: The thresholds of the official Keras ``mean_iou`` metric: 0.5, 0.55, ..., 0.95.
KERAS_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def keras_mean_iou(probs, targets, thresholds=KERAS_THRESHOLDS) -> float:
    """The official Keras metric ``mean_iou``: two-class mean IoU averaged over ``thresholds``.

    For each threshold ``t`` the prediction is ``p > t``; TensorFlow's ``tf.metrics.mean_iou`` with 2
    classes builds the 2x2 confusion matrix and averages ``TP_c / (TP_c + FP_c + FN_c)`` over the
    classes whose denominator is not zero (background and foreground). The result is the mean over
    thresholds. All voxels of all cases are pooled (see the module docstring).

    Returns:
        The metric in [0, 1].
    """
    values = []
    for t in thresholds:
        p, y = _flat_binary(probs, targets, float(t), strict=True)
        tp = float((p & y).sum())
        fp = float((p & ~y).sum())
        fn = float((~p & y).sum())
        tn = float(p.numel()) - tp - fp - fn
        per_class = []
        for inter, denom in ((tn, tn + fn + fp), (tp, tp + fp + fn)):  # background, foreground
            if denom > 0:
                per_class.append(inter / denom)
        values.append(sum(per_class) / len(per_class))
    return float(sum(values) / len(values))


#: ``finetune.iou`` choices and what each reports (shown in the results tables).
IOU_DEFINITIONS = {
    "pooled": "IoU and Dice pooled over all test voxels, sum|P∩T| / sum|P∪T| at p >= threshold (official Models Genesis evaluation; Table 2)",
    "per_case": "IoU and Dice averaged over test cases (MONAI convention; every case weighs the same)",
    "keras": "IoU: Keras two-class mean IoU averaged over thresholds 0.5..0.95 (official Keras metric); Dice pooled",
}


def overlap_counts(prob, target, threshold: float = 0.5, keras_thresholds=KERAS_THRESHOLDS) -> torch.Tensor:
    """The voxel confusion counts of one case, enough for every IoU definition.

    Args:
        prob: probabilities in [0, 1], any shape (e.g. ``(1, X, Y, Z)``).
        target: the matching binary mask (``> 0.5`` is foreground).
        threshold: foreground of row 0 is ``p >= threshold`` (Dice, pooled and per-case IoU).
        keras_thresholds: foreground of the following rows is ``p > t`` (the Keras ``mean_iou``).

    Returns:
        ``(1 + len(keras_thresholds), 4)`` float64 ``[TP, FP, FN, TN]`` per row. Counts of several
        cases add up to the counts of their pooled voxels, so a test set is scored from its cases'
        counts without keeping its predictions (:func:`scores_from_counts`).
    """
    p = _as_tensor(prob).reshape(-1).float()
    y = _as_tensor(target).reshape(-1) > 0.5
    if p.shape != y.shape:
        raise DataError(f"segmentation metric: prediction of {p.numel()} voxels but target of {y.numel()}")
    rows = []
    for t, strict in [(float(threshold), False), *[(float(k), True) for k in keras_thresholds]]:
        pred = p > t if strict else p >= t
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        rows.append(torch.stack([tp, fp, fn, p.numel() - tp - fp - fn]))
    return torch.stack(rows).to(torch.float64).cpu()


def _iou_dice(tp: float, fp: float, fn: float) -> tuple[float, float]:
    """IoU and Dice of counts; 1.0 when prediction and ground truth are both empty (official ``empty_score``)."""
    union, total = tp + fp + fn, 2 * tp + fp + fn
    return (tp / union if union else 1.0), (2 * tp / total if total else 1.0)


def scores_from_counts(counts, definition: str = "pooled") -> dict[str, float]:
    """``{"iou", "dice"}`` of a test set from its cases' :func:`overlap_counts` under one IoU definition.

    Raises:
        DataError: no cases, or an unknown definition.
    """
    if definition not in IOU_DEFINITIONS:
        raise DataError(f"unknown IoU definition {definition!r}; expected one of {', '.join(IOU_DEFINITIONS)}")
    if not len(counts):
        raise DataError("segmentation metric: no cases to score")
    stacked = torch.stack([_as_tensor(c).to(torch.float64) for c in counts])  # (cases, rows, 4)
    total = stacked.sum(0)
    pooled_iou, pooled_dice = _iou_dice(*total[0, :3].tolist())
    if definition == "pooled":
        return {"iou": pooled_iou, "dice": pooled_dice}
    if definition == "per_case":
        per_case = [_iou_dice(*case[0, :3].tolist()) for case in stacked]
        return {"iou": sum(i for i, _ in per_case) / len(per_case), "dice": sum(d for _, d in per_case) / len(per_case)}
    values = []
    for tp, fp, fn, tn in total[1:].tolist():  # the Keras metric: two-class mean IoU per threshold
        per_class = [inter / denom for inter, denom in ((tn, tn + fn + fp), (tp, tp + fp + fn)) if denom > 0]
        values.append(sum(per_class) / len(per_class))
    return {"iou": sum(values) / len(values), "dice": pooled_dice}


def segmentation_scores(probs, targets, definition: str = "pooled", threshold: float = 0.5) -> dict[str, float]:
    """``{"iou", "dice"}`` of a test set under one IoU definition (``finetune.iou``).

    Args:
        probs: per-case probabilities in [0, 1] (tensors or arrays, e.g. ``(1, X, Y, Z)`` each).
        targets: the matching binary masks.
        definition: ``"pooled"``, ``"per_case"`` or ``"keras"`` (:data:`IOU_DEFINITIONS`).
        threshold: the probability threshold of Dice and of the pooled / per-case IoU.

    Returns:
        ``{"iou": float, "dice": float}``.
    """
    if len(probs) != len(targets):
        raise DataError(f"segmentation metric: {len(probs)} predictions but {len(targets)} targets")
    if definition not in IOU_DEFINITIONS:
        raise DataError(f"unknown IoU definition {definition!r}; expected one of {', '.join(IOU_DEFINITIONS)}")
    return scores_from_counts([overlap_counts(p, t, threshold) for p, t in zip(probs, targets)], definition)


#: Whether a larger value of each metric is better (all of ours are).
HIGHER_IS_BETTER = {"auc": True, "dice": True, "iou": True, "iou/per_image": True, "dice/per_image": True}
