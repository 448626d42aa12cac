"""One task's results files of the trials protocol (``evaluate``): tables, figure and statistics.

Written by :func:`write_results` into the ``evaluate`` output folder after every trial:

* ``results.csv``: one row per (initialisation, trial): seed, status (``ok`` / ``failed``), every test
  metric, epochs, time, error message;
* ``results.json``: per initialisation n, failed, mean, s.d., p-value vs the best, the
  "not significantly different" flag, the raw values; the best initialisation and the test used;
* ``results.md``: the table (values in %, as the papers print them);
* ``results.png``: bar chart of mean ± s.d. with the trials as dots.

Marks, as in Semantic Genesis (Haghighi et al., MICCAI 2020) Table 2: the best initialisation is
**bold**; † marks initialisations whose difference from the best is not significant (independent
two-sample t-test, p >= 0.05). ``semantic-genesis report results`` (:mod:`semantic_genesis.report.results`)
merges the folders of several tasks into one table.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.finetune.tasks import Task


@dataclass
class TrialRecord:
    """One finished (or failed) trial."""

    init: str
    trial: int
    seed: int
    status: str
    metrics: dict[str, float]
    epochs: int
    best_epoch: int
    seconds: float
    error: str | None = None

    def row(self, metric_names: list[str]) -> dict[str, Any]:
        return {
            "init": self.init, "trial": self.trial, "seed": self.seed, "status": self.status,
            **{m: self.metrics.get(m, math.nan) for m in metric_names},
            "epochs": self.epochs, "best_epoch": self.best_epoch, "seconds": self.seconds, "error": self.error or "",
        }


METRIC_LABELS = {"auc": "AUC", "iou": "IoU", "dice": "Dice"}
NOT_SIGNIFICANT_MARK = "†"


def percent_text(value: float) -> str:
    """``value`` in % with two decimals (``n/a`` when missing or not finite)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100.0 * value:.2f}"


def cell_text(mean: float, std: float) -> str:
    """A table cell ``mean ± s.d.`` in %."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{percent_text(mean)} ± {percent_text(std)}" if std is not None and math.isfinite(std) else percent_text(mean)


def nan_to_none(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_to_none(v) for v in obj]
    return obj


def summarize_records(task: "Task", metric: str, init_names: Sequence[str], records: Sequence[TrialRecord],
                      alpha: float = 0.05, equal_var: bool = True) -> dict[str, Any]:
    """Statistics of the trials: per init summaries of every metric, and the t-tests on ``metric``."""
    from semantic_genesis.finetune.stats import compare_to_best, summarize

    values = {name: [r.metrics.get(metric, math.nan) if r.status == "ok" else math.nan
                     for r in records if r.init == name] for name in init_names}
    values = {k: v for k, v in values.items() if v}
    comparison = None
    if any(any(math.isfinite(x) for x in v) for v in values.values()):
        comparison = compare_to_best(values, higher_is_better=True, alpha=alpha, equal_var=equal_var)
    inits: dict[str, Any] = {}
    for name in init_names:
        rows = [r for r in records if r.init == name]
        if not rows:
            continue
        entry: dict[str, Any] = {"trials": len(rows)}
        for m in task.metrics:
            s = summarize([r.metrics.get(m, math.nan) if r.status == "ok" else math.nan for r in rows])
            entry[m] = {"n": s.n, "mean": s.mean, "std": s.std}
        s = summarize(values[name])
        entry.update(n=s.n, failed=s.n_failed, mean=s.mean, std=s.std, values=values[name])
        if comparison is not None:
            entry["p_value"] = comparison.p_values.get(name, math.nan)
            entry["not_significant"] = comparison.not_significant.get(name, False)
            entry["best"] = name == comparison.best
        inits[name] = entry
    return {
        "task": task.name,
        "kind": task.kind,
        "metric": metric,
        "metrics": list(task.metrics),
        "best": comparison.best if comparison else None,
        "ranking": comparison.ranking if comparison else [],
        "alpha": alpha,
        "test": f"independent two-sample t-test ({'Student, equal variances' if equal_var else 'Welch'}), two-sided, best vs each",
        "inits": inits,
    }


def task_markdown(summary: dict[str, Any]) -> str:
    """The markdown table of one task's summary."""
    metric = summary["metric"]
    others = [m for m in summary["metrics"] if m != metric]
    head = ["initialisation", f"{METRIC_LABELS.get(metric, metric)} % (mean ± s.d.)",
            *[f"{METRIC_LABELS.get(m, m)} %" for m in others], "trials ok", "failed", "p vs best", ""]
    lines = [f"## {summary['task'].upper()} ({summary['kind']}, {METRIC_LABELS.get(metric, metric)})", ""]
    data = summary.get("data") or {}
    if data:
        lines += [f"Data: {data.get('source', '')}; {data.get('samples', '?')} samples from "
                  f"{data.get('patients', '?')} patients; split {data.get('split', {})}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = summary.get("ranking") or list(summary["inits"])
    order = order + [n for n in summary["inits"] if n not in order]
    for name in order:
        e = summary["inits"][name]
        cell = cell_text(e["mean"], e["std"])
        mark = ""
        if e.get("best"):
            cell, mark = f"**{cell}**", "best"
        elif e.get("not_significant"):
            cell, mark = f"{cell} {NOT_SIGNIFICANT_MARK}", "not significantly different from best"
        p = e.get("p_value")
        p_text = "—" if p is None or not math.isfinite(p) else f"{p:.3g}"
        row = [name, cell, *[cell_text(e[m]["mean"], e[m]["std"]) for m in others], str(e["n"]), str(e["failed"]), p_text, mark]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"{summary['test']}; α = {summary['alpha']}. **Bold**: best mean; {NOT_SIGNIFICANT_MARK}: "
              "not significantly different from the best. Failed (diverged) trials are excluded from mean and s.d.", ""]
    return "\n".join(lines)


def bar_chart(panels: list[dict[str, Any]], path: Path) -> Path:
    """Bar chart(s) of mean ± s.d. (one panel per task summary) with trials as dots, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semantic_genesis.utils.atomic import atomic_path

    fig, axes = plt.subplots(1, len(panels), figsize=(max(3.2, 1.1 * max(len(p["inits"]) for p in panels) + 1.5) * len(panels), 3.4),
                             squeeze=False)
    for ax, summary in zip(axes[0], panels):
        names = list(summary["inits"])
        means = [100 * e["mean"] if math.isfinite(e["mean"]) else 0.0 for e in summary["inits"].values()]
        stds = [100 * e["std"] if math.isfinite(e["std"]) else 0.0 for e in summary["inits"].values()]
        colors = ["tab:orange" if e.get("best") else ("tab:blue" if e.get("not_significant") else "tab:gray")
                  for e in summary["inits"].values()]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=colors, alpha=0.8)
        for i, e in enumerate(summary["inits"].values()):
            pts = [100 * v for v in e["values"] if v is not None and math.isfinite(v)]
            ax.scatter([i] * len(pts), pts, s=10, color="black", zorder=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right")
        label = METRIC_LABELS.get(summary["metric"], summary["metric"])
        ax.set_ylabel(f"{label} (%)")
        ax.set_title(f"{summary['task'].upper()}: {label}, mean ± s.d.")
        finite = [m - s for m, s in zip(means, stds) if m > 0]
        if finite:
            ax.set_ylim(max(0.0, min(finite) - 10), 100)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_results(out: Path, task: "Task", metric: str, init_names: Sequence[str], records: Sequence[TrialRecord],
                  data_info: dict[str, Any] | None = None, trials: int | None = None) -> dict[str, Any]:
    """Write ``results.csv``, ``results.json``, ``results.md`` and ``results.png`` for one task; returns the summary."""
    from semantic_genesis.utils.atomic import write_json, write_text

    out = Path(out)
    metric_names = list(task.metrics)
    buffer = io.StringIO()
    fields = ["task", "init", "trial", "seed", "status", *metric_names, "epochs", "best_epoch", "seconds", "error"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for r in records:
        writer.writerow({"task": task.name, **r.row(metric_names)})
    write_text(out / "results.csv", buffer.getvalue())
    summary = summarize_records(task, metric, init_names, records)
    summary["trials_per_init"] = trials
    summary["data"] = data_info or {}
    write_json(out / "results.json", nan_to_none(summary))
    write_text(out / "results.md", f"# Transfer results: {task.name}\n\n" + task_markdown(summary))
    if summary["best"] is not None:
        bar_chart([summary], out / "results.png")
    return summary


