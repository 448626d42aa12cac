"""Label-efficiency curves: the target metric of every initialisation against the share of labels.

Self-supervised pretraining matters most when labels are few (Zhou et al., Models Genesis, MedIA
2021, Fig. 5), so a transfer result is a curve, not a cell. ``semantic-genesis evaluate
--label-fractions 0.1,0.25,0.5,1.0`` runs the trials protocol at every fraction of the training
patients (nested subsets, the same for every initialisation; the same test set everywhere) and, with
``--mode finetune,linear_probe``, also with a frozen encoder. ``semantic-genesis report results``
draws the curves with :func:`plot_label_efficiency` from the per-setting summaries
(:mod:`semantic_genesis.finetune.results`): one panel per task and mode, x = label fraction, one line
per initialisation at mean ± s.d. over its finished trials, the trials as dots.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence


def _panel_key(summary: dict[str, Any]) -> tuple[str, str]:
    return summary["task"], summary.get("mode", "finetune")


def curve_points(summaries: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[tuple[float, list[float]]]]]:
    """``{(task, mode): {init: [(fraction, finite trial values), ...]}}`` sorted by fraction.

    Summaries without ``label_fraction`` count as fraction 1.0 (an evaluation with every label).
    """
    panels: dict[tuple[str, str], dict[str, list[tuple[float, list[float]]]]] = {}
    for s in sorted(summaries, key=lambda s: float(s.get("label_fraction", 1.0))):
        lines = panels.setdefault(_panel_key(s), {})
        for name, entry in s["inits"].items():
            values = [float(v) for v in entry.get("values", []) if v is not None and math.isfinite(float(v))]
            if values:
                lines.setdefault(name, []).append((float(s.get("label_fraction", 1.0)), values))
    return panels


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    from semantic_genesis.finetune.stats import summarize

    s = summarize(values)
    return s.mean, (s.std if math.isfinite(s.std) else 0.0)


def plot_label_efficiency(summaries: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Save the label-efficiency figure (PNG): one panel per (task, mode), metric (%) vs label fraction.

    Args:
        summaries: per-setting summaries (``task``, ``metric``, ``mode``, ``label_fraction``,
            ``inits[name]["values"]``), as :func:`semantic_genesis.report.results.load_evaluations` reads them.
        path: the PNG to write (atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semantic_genesis.finetune.protocol import MODE_LABELS
    from semantic_genesis.finetune.results import metric_label
    from semantic_genesis.utils.atomic import write_figure

    panels = curve_points(summaries)
    example = {_panel_key(s): s for s in summaries}
    names: list[str] = []
    for lines in panels.values():
        names += [n for n in lines if n not in names]
    colours = {name: f"C{k % 10}" for k, name in enumerate(names)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.9), squeeze=False)
    for ax, (key, lines) in zip(axes[0], panels.items()):
        xs = sorted({x for pts in lines.values() for x, _ in pts})
        for name, pts in lines.items():
            means = [100 * _mean_sd(v)[0] for _, v in pts]
            sds = [100 * _mean_sd(v)[1] for _, v in pts]
            ax.errorbar([x for x, _ in pts], means, yerr=sds, marker="o", ms=4, capsize=3, color=colours[name], label=name)
            for x, v in pts:
                ax.scatter([x] * len(v), [100 * t for t in v], s=7, color=colours[name], alpha=0.35, zorder=1)
        if len(xs) > 1:
            ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("label fraction (of the training patients)")
        summary = example[key]
        ax.set_ylabel(f"test {metric_label(summary, summary['metric'])} (%)")
        n = summary.get("trials_per_init")
        ax.set_title(f"{key[0].upper()}, {MODE_LABELS.get(key[1], key[1])}: mean ± s.d." + (f" ({n} trials)" if n else ""),
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    write_figure(path, fig, dpi=130)
    return path
