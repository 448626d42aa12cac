"""Results tables and figures of the trials protocol (``evaluate``) and ``report results``.

Per task (written by :func:`write_results` into the ``evaluate`` output folder):

* ``results.csv``: one row per (initialisation, trial): seed, status (``ok`` / ``failed``), every test
  metric, epochs, time, error message;
* ``results.json``: per initialisation n, failed, mean, s.d., p-value vs the best, the
  "not significantly different" flag, the raw values; the best initialisation and the test used;
* ``results.md``: the table (values in %, as the papers print them);
* ``results.png``: bar chart of mean ± s.d. with the trials as dots.

``semantic-genesis report results DIR... --out DIR`` merges several task folders into one table
shaped like Semantic Genesis Table 2 (rows: initialisations; columns: tasks), as ``results.md`` and
``results.csv`` (+ ``results.png`` with one panel per task). Marks, as in the paper's table: the best
initialisation of a column is **bold**; † marks initialisations whose difference from the best is not
significant (independent two-sample t-test, p >= 0.05).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.finetune.protocol import TrialRecord
    from semantic_genesis.finetune.tasks import Task

REPORT_NAME = "results"
REPORT_HELP = "merge evaluate folders of several tasks into one Table-2-shaped table (markdown, CSV, PNG)"

METRIC_LABELS = {"auc": "AUC", "iou": "IoU", "dice": "Dice"}
NOT_SIGNIFICANT_MARK = "†"


def metric_label(summary: dict[str, Any], metric: str) -> str:
    """The column label of ``metric``: ``"IoU (pooled)"`` etc. when the summary records the IoU definition."""
    label = METRIC_LABELS.get(metric, metric)
    definition = summary.get("iou_definition")
    if definition and metric in ("iou", "dice"):
        label += f" ({definition.replace('_', ' ')})"
    return label


def _scoring_note(summary: dict[str, Any]) -> str:
    from semantic_genesis.finetune.metrics import IOU_DEFINITIONS

    definition = summary.get("iou_definition")
    return f"{METRIC_LABELS['iou']} definition `{definition}`: {IOU_DEFINITIONS.get(definition, definition)}." if definition else ""


def _pct(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100.0 * value:.2f}"


def _cell(mean: float, std: float) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{_pct(mean)} ± {_pct(std)}" if std is not None and math.isfinite(std) else _pct(mean)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def summarize_records(task: "Task", metric: str, init_names: Sequence[str], records: Sequence["TrialRecord"],
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
    head = ["initialisation", f"{metric_label(summary, metric)} % (mean ± s.d.)",
            *[f"{metric_label(summary, m)} %" for m in others], "trials ok", "failed", "p vs best", ""]
    lines = [f"## {summary['task'].upper()} ({summary['kind']}, {metric_label(summary, metric)})", ""]
    data = summary.get("data") or {}
    if data:
        lines += [f"Data: {data.get('source', '')}; {data.get('samples', '?')} samples from "
                  f"{data.get('patients', '?')} patients; split {data.get('split', {})}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = summary.get("ranking") or list(summary["inits"])
    order = order + [n for n in summary["inits"] if n not in order]
    for name in order:
        e = summary["inits"][name]
        cell = _cell(e["mean"], e["std"])
        mark = ""
        if e.get("best"):
            cell, mark = f"**{cell}**", "best"
        elif e.get("not_significant"):
            cell, mark = f"{cell} {NOT_SIGNIFICANT_MARK}", "not significantly different from best"
        p = e.get("p_value")
        p_text = "—" if p is None or not math.isfinite(p) else f"{p:.3g}"
        row = [name, cell, *[_cell(e[m]["mean"], e[m]["std"]) for m in others], str(e["n"]), str(e["failed"]), p_text, mark]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"{summary['test']}; α = {summary['alpha']}. **Bold**: best mean; {NOT_SIGNIFICANT_MARK}: "
              "not significantly different from the best. Failed (diverged) trials are excluded from mean and s.d.", ""]
    if _scoring_note(summary):
        lines += [_scoring_note(summary), ""]
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
        label = metric_label(summary, summary["metric"])
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


def write_results(out: Path, task: "Task", metric: str, init_names: Sequence[str], records: Sequence["TrialRecord"],
                  data_info: dict[str, Any] | None = None, trials: int | None = None,
                  iou_definition: str | None = None) -> dict[str, Any]:
    """Write ``results.csv``, ``results.json``, ``results.md`` and ``results.png`` for one task; returns the summary.

    ``iou_definition`` (``finetune.iou`` of a segmentation task) is recorded in the summary and shown in
    the column labels and under the table, so a table says which IoU it reports.
    """
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
    if iou_definition and task.kind == "segmentation":
        summary["iou_definition"] = iou_definition
    write_json(out / "results.json", _nan_to_none(summary))
    write_text(out / "results.md", f"# Transfer results: {task.name}\n\n" + task_markdown(summary))
    if summary["best"] is not None:
        bar_chart([summary], out / "results.png")
    return summary


# ------------------------------------------------------------------------------------------------
# report results: merge several tasks
# ------------------------------------------------------------------------------------------------
def load_summary(folder: str | Path) -> dict[str, Any]:
    """Read ``results.json`` of an ``evaluate`` folder (NaN restored from null)."""
    from semantic_genesis.errors import DataError, describe_path

    path = Path(folder) / "results.json"
    if not path.is_file():
        raise DataError(f"{describe_path(path)}: not found; expected an output folder of 'semantic-genesis evaluate'")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{describe_path(path)}: not valid JSON ({exc})") from None
    for key in ("task", "metric", "inits"):
        if key not in summary:
            raise DataError(f"{describe_path(path)}: no {key!r}; not a results file of 'semantic-genesis evaluate'")

    def restore(e: dict[str, Any]) -> dict[str, Any]:
        for k in ("mean", "std", "p_value"):
            if e.get(k) is None:
                e[k] = math.nan
        e["values"] = [math.nan if v is None else v for v in e.get("values", [])]
        for m in summary.get("metrics", []):
            if isinstance(e.get(m), dict):
                e[m] = {k: (math.nan if v is None else v) for k, v in e[m].items()}
        return e

    summary["inits"] = {k: restore(v) for k, v in summary["inits"].items()}
    return summary


def merge_tables(summaries: Sequence[dict[str, Any]]) -> tuple[str, list[list[str]]]:
    """A Table-2-shaped markdown table and CSV rows: initialisations x tasks, cells mean ± s.d. (%)."""
    inits: list[str] = []
    for s in summaries:
        inits += [n for n in s["inits"] if n not in inits]
    columns = [f"{s['task'].upper()} {metric_label(s, s['metric'])}%" for s in summaries]
    md = ["| initialisation | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    csv_rows = [["initialisation", *[f"{c} mean" for c in columns], *[f"{c} sd" for c in columns],
                 *[f"{c} mark" for c in columns]]]
    for name in inits:
        cells, means, sds, marks = [], [], [], []
        for s in summaries:
            e = s["inits"].get(name)
            if e is None:
                cells.append("—")
                means.append("")
                sds.append("")
                marks.append("")
                continue
            cell = _cell(e["mean"], e["std"])
            mark = "best" if e.get("best") else ("ns" if e.get("not_significant") else "")
            if e.get("failed"):
                cell += f" ({e['failed']} failed)"
            cells.append(f"**{cell}**" if mark == "best" else (f"{cell} {NOT_SIGNIFICANT_MARK}" if mark == "ns" else cell))
            means.append(_pct(e["mean"]))
            sds.append(_pct(e["std"]))
            marks.append(mark)
        md.append(f"| {name} | " + " | ".join(cells) + " |")
        csv_rows.append([name, *means, *sds, *marks])
    return "\n".join(md), csv_rows


def merge_results(folders: Sequence[str | Path], out: str | Path) -> Path:
    """Merge ``evaluate`` folders into ``OUT/results.md``, ``results.csv`` and ``results.png``; returns the md path."""
    from semantic_genesis.utils.atomic import write_text

    summaries = [load_summary(f) for f in folders]
    table, rows = merge_tables(summaries)
    out = Path(out)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    write_text(out / "results.csv", buffer.getvalue())
    trials = sorted({str(s.get("trials_per_init")) for s in summaries})
    text = [
        "# Transfer results (Semantic Genesis Table 2 layout)", "",
        f"Mean ± s.d. (%) over {', '.join(trials)} trials per initialisation. **Bold**: best in the column; "
        f"{NOT_SIGNIFICANT_MARK}: not significantly different from the best (independent two-sample t-test, p >= 0.05).",
        "", table, "",
    ]
    for s, folder in zip(summaries, folders):
        note = f" {_scoring_note(s)}" if _scoring_note(s) else ""
        text.append(f"- {s['task'].upper()}: {Path(folder)} ({(s.get('data') or {}).get('source', '')}).{note}")
    write_text(out / "results.md", "\n".join(text) + "\n")
    panels = [s for s in summaries if s.get("best") is not None]
    if panels:
        bar_chart(panels, out / "results.png")
    return out / "results.md"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="DIR", help="output folders of 'semantic-genesis evaluate'")
    parser.add_argument("--out", required=True, help="folder for results.md, results.csv and results.png")


def run_report(args: argparse.Namespace) -> int:
    path = merge_results(args.folders, args.out)
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path}, {path.with_suffix('.csv')}" + (f", {path.with_suffix('.png')}" if path.with_suffix(".png").is_file() else ""))
    return 0
