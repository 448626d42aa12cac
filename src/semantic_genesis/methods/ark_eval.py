"""Ark's evaluation: every dataset scored by its own head (Ma et al., MICCAI 2023; Ark+).

As the official ``engine.py`` / ``trainer.py`` (``test_classification``, ``metric_AUROC``): for
dataset ``i``, head ``i``'s logits go through a sigmoid (multi-label, binary) or a softmax
(multi-class), optionally averaged over test crops (TenCrop), and are scored per class by ROC AUC
(:func:`semantic_genesis.metrics.roc_auc`); the dataset's score is the mean over its classes.
A class without positives (or without negatives) in the set has no AUC: it is listed as skipped and
left out of the mean (Ark+'s ``metric_AUROC``), never counted as 0.5. Multi-class datasets also get
the accuracy of the argmax. Unknown labels (NaN) are left out of their class; soft labels (CheXpert's
label smoothing) count as positive from 0.5.

:func:`score_head` scores one dataset, :func:`summarise` flattens the scores of all datasets into
the metrics the engine logs, :func:`results_markdown` writes the tables (one per dataset and an
overall one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from semantic_genesis.errors import DataError


@dataclass
class HeadScores:
    """The scores of one dataset.

    Attributes:
        dataset: its name; task: ``multi-label`` / ``multi-class`` / ``binary``.
        images: images scored.
        auc: class name -> AUC (NaN for a skipped class), over the scored classes.
        positives: class name -> positives among the known labels.
        mean_auc: mean over the classes with an AUC (NaN when none has one).
        accuracy: multi-class only: fraction of images whose argmax is the labelled class.
        skipped: classes without an AUC (only one label value present).
    """

    dataset: str
    task: str
    images: int
    auc: dict[str, float] = field(default_factory=dict)
    positives: dict[str, int] = field(default_factory=dict)
    mean_auc: float = math.nan
    accuracy: float | None = None
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def head_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Scores in [0, 1] from a head's logits ``(..., C)``: softmax for multi-class, else sigmoid."""
    logits = logits.float()
    return torch.softmax(logits, dim=-1) if task == "multi-class" else torch.sigmoid(logits)


def score_head(dataset: str, task: str, names: Sequence[str], scores, targets,
               eval_labels: Sequence[str] = ()) -> HeadScores:
    """Score one dataset.

    Args:
        dataset: its name (for messages and tables).
        task: ``multi-label``, ``multi-class`` or ``binary``.
        names: the ``C`` class names of the head.
        scores: ``(N, C)`` probabilities (or any scores; only their order matters for AUC).
        targets: ``(N, C)`` labels in [0, 1] or NaN (unknown).
        eval_labels: score only these classes (e.g. CheXpert's competition five); default all.

    Raises:
        DataError: shapes that do not fit, or an unknown ``eval_labels`` name.
    """
    from semantic_genesis.metrics import roc_auc

    s = torch.as_tensor(scores).detach().double().cpu()
    y = torch.as_tensor(targets).detach().double().cpu()
    names = list(names)
    if s.ndim != 2 or tuple(s.shape) != tuple(y.shape) or s.shape[1] != len(names):
        raise DataError(f"{dataset}: scores {tuple(s.shape)} and targets {tuple(y.shape)} must both be (N, {len(names)})")
    chosen = list(eval_labels) or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise DataError(f"{dataset}: eval label {unknown[0]!r} is not one of {', '.join(names)}")
    result = HeadScores(dataset, task, int(s.shape[0]))
    for name in chosen:
        k = names.index(name)
        known = ~torch.isnan(y[:, k])
        labels = (y[known, k] >= 0.5).long()
        positives = int(labels.sum())
        result.positives[name] = positives
        if positives == 0 or positives == labels.numel():
            result.auc[name] = math.nan
            result.skipped.append(name)
        else:
            result.auc[name] = roc_auc(s[known, k], labels)
    defined = [v for v in result.auc.values() if not math.isnan(v)]
    result.mean_auc = float(np.mean(defined)) if defined else math.nan
    if task == "multi-class":
        rows = ~torch.isnan(y).any(dim=1)
        if bool(rows.any()):
            result.accuracy = float((s[rows].argmax(dim=1) == y[rows].argmax(dim=1)).double().mean())
    return result


def overall_auc(results: Sequence[HeadScores]) -> float:
    """The mean over datasets of their mean AUC (datasets without one left out; NaN when none has one)."""
    values = [r.mean_auc for r in results if not math.isnan(r.mean_auc)]
    return float(np.mean(values)) if values else math.nan


def summarise(results: Sequence[HeadScores], prefix: str = "") -> dict[str, Any]:
    """Flat metrics: ``{prefix}auc`` (overall), ``{prefix}auc/<dataset>``, ``{prefix}auc/<dataset>/<class>``,
    ``{prefix}accuracy/<dataset>`` (multi-class) and ``{prefix}skipped/<dataset>`` (a list, when any)."""
    out: dict[str, Any] = {f"{prefix}auc": overall_auc(results)}
    for r in results:
        out[f"{prefix}auc/{r.dataset}"] = r.mean_auc
        for name, value in r.auc.items():
            out[f"{prefix}auc/{r.dataset}/{name}"] = value
        if r.accuracy is not None:
            out[f"{prefix}accuracy/{r.dataset}"] = r.accuracy
        if r.skipped:
            out[f"{prefix}skipped/{r.dataset}"] = list(r.skipped)
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def results_markdown(results: Sequence[HeadScores], title: str = "Ark evaluation") -> str:
    """An overall table (one row per dataset and their mean) and one table per dataset (AUC per class)."""
    lines = [f"## {title}", "", "| dataset | task | images | mean AUC | accuracy | skipped classes |",
             "|---|---|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r.dataset} | {r.task} | {r.images} | {_fmt(r.mean_auc)} | {_fmt(r.accuracy)} | "
                     f"{', '.join(r.skipped) or '-'} |")
    lines.append(f"| **mean over datasets** | | {sum(r.images for r in results)} | {_fmt(overall_auc(results))} | | |")
    for r in results:
        lines += ["", f"### {r.dataset} ({r.task}, {r.images} images)", "", "| class | positives | AUC |", "|---|---:|---:|"]
        lines += [f"| {name} | {r.positives.get(name, 0)} | {_fmt(value)} |" for name, value in r.auc.items()]
    return "\n".join(lines) + "\n"
