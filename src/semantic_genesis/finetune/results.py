"""One task's results files of the trials protocol (``evaluate``): tables, figure and statistics.

Written by :func:`write_results` into the ``evaluate`` output folder after every trial:

* ``results.csv``: one row per (initialisation, trial): seed, status (``ok`` / ``failed``), every test
  metric, epochs, time, error message;
* ``results.json``: per initialisation n, failed, mean, s.d., p-value vs the best, the
  "not significantly different" flag, the raw values; the best initialisation and the test used;
* ``results.md``: the table (values in %, as the papers print them); while trials are still running
  it is marked ``partial: 2/6 trials done``;
* ``results.tex``: the same as a LaTeX table (booktabs);
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


METRIC_LABELS = {"auc": "AUC", "iou": "IoU", "dice": "Dice", "iou/per_image": "IoU (per image)",
                 "dice/per_image": "Dice (per image)"}
NOT_SIGNIFICANT_MARK = "†"
MISSING = "—"


def metric_label(summary: dict[str, Any], metric: str) -> str:
    """The column label of ``metric``: ``"IoU (pooled)"`` etc. when the summary records the IoU definition."""
    label = METRIC_LABELS.get(metric, metric)
    definition = summary.get("iou_definition")
    if definition and metric in ("iou", "dice"):
        label += f" ({definition.replace('_', ' ')})"
    return label


def scoring_note(summary: dict[str, Any]) -> str:
    """One sentence saying which IoU a segmentation summary reports (``""`` for classification)."""
    from semantic_genesis.metrics import IOU_DEFINITIONS

    definition = summary.get("iou_definition")
    return f"{METRIC_LABELS['iou']} definition `{definition}`: {IOU_DEFINITIONS.get(definition, definition)}." if definition else ""


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


def label_names_of(task: "Task") -> tuple[str, ...]:
    """The labels of a multi-label task (``()`` for single-output tasks and task-like objects without any)."""
    return tuple(getattr(task, "label_names", ()) or ())


def summarize_records(task: "Task", metric: str, init_names: Sequence[str], records: Sequence[TrialRecord],
                      alpha: float = 0.05, equal_var: bool = True) -> dict[str, Any]:
    """Statistics of the trials: per init summaries of every metric, and the t-tests on ``metric``."""
    from semantic_genesis.finetune.stats import compare_to_best, summarize

    labels = label_names_of(task)
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
        if labels:  # per-label AUC: a label without both classes in the test split is n/a
            entry["per_label"] = {}
            for label in labels:
                ok = [r.metrics.get(f"{metric}/{label}", math.nan) for r in rows if r.status == "ok"]
                s = summarize(ok)
                entry["per_label"][label] = {"n": s.n, "mean": s.mean, "std": s.std, "na_trials": len(ok) - s.n}
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
        "spatial_dims": int(getattr(task, "spatial_dims", 3)),
        **({"slices_of": task.slices_of} if getattr(task, "slices_of", "") else {}),
        "metric": metric,
        "metrics": list(task.metrics),
        **({"labels": list(labels)} if labels else {}),
        "best": comparison.best if comparison else None,
        "ranking": comparison.ranking if comparison else [],
        "alpha": alpha,
        "test": f"independent two-sample t-test ({'Student, equal variances' if equal_var else 'Welch'}), two-sided, best vs each",
        "inits": inits,
    }


def test_name(summaries: Sequence[dict[str, Any]]) -> str:
    """``"Student's"`` / ``"Welch's"`` (both, comma-separated, when summaries differ) from their ``test``."""
    names = sorted({"Welch's" if "Welch" in s.get("test", "") else "Student's" for s in summaries})
    return " / ".join(names) or "Student's"


def setting_text(summary: dict[str, Any]) -> str:
    """``"linear probe, 25% of the training patients"`` (``""`` for fine-tuning with every label)."""
    parts = []
    if summary.get("mode") == "linear_probe":
        parts.append("linear probe")
    fraction = summary.get("label_fraction")
    if fraction is not None and fraction < 1.0:
        parts.append(f"{100 * fraction:g}% of the training patients")
    return ", ".join(parts)


def test_set_text(summary: dict[str, Any]) -> str:
    """``"Test set: 10 patients, 79 samples, 22 positive."`` from the summary's data (``""`` if unknown).

    Printed under every table so that a reader can judge the power of the t-tests.
    """
    test = (summary.get("data") or {}).get("test") or {}
    if not test:
        return ""
    positive = "positive (class 1)" if summary.get("kind") == "classification" else "with foreground"
    if summary.get("labels"):
        positive = "positive for at least one label"
    def count(key: str, noun: str) -> str:
        n = test.get(key, "?")
        return f"{n} {noun}" + ("" if n == 1 else "s")

    return (f"Test set (the same for every initialisation and trial): {count('patients', 'patient')}, "
            f"{count('samples', 'sample')}, {test.get('positives', '?')} {positive}.")


def progress_note(summary: dict[str, Any]) -> str:
    """``"partial: 2/6 trials done"`` while an evaluation is unfinished, else ``""``."""
    done, expected = summary.get("trials_done"), summary.get("trials_expected")
    if done is None or expected is None or done >= expected:
        return ""
    return f"partial: {done}/{expected} trials done"


def _versus_best(entry: dict[str, Any], alpha: float) -> str:
    if entry.get("best"):
        return "best"
    if entry.get("not_significant"):
        return "not significantly different"
    p = entry.get("p_value")
    if p is not None and math.isfinite(p) and p < alpha:
        return "significantly worse"
    return MISSING


def task_markdown(summary: dict[str, Any]) -> str:
    """The markdown section (``##`` heading, data line, table, legend) of one task's summary."""
    metric = summary["metric"]
    others = [m for m in summary["metrics"] if m != metric]
    head = ["initialisation", f"{metric_label(summary, metric)} % (mean ± s.d.)",
            *[f"{metric_label(summary, m)} %" for m in others], "trials ok", "failed", "p vs best", "vs best"]
    note = progress_note(summary)
    where = setting_text(summary)
    labels = summary.get("labels")
    kind = f"multi-label classification of {len(labels)} labels" if labels else summary["kind"]
    lines = [f"## {summary['task'].upper()} ({kind}, {'mean ' if labels else ''}{metric_label(summary, metric)}"
             + (f"; {where}" if where else "") + ")", ""]
    if note:
        lines += [f"**{note.capitalize()}**: means, s.d. and t-tests cover the finished trials only; "
                  "rerun the same evaluate command to finish.", ""]
    data = summary.get("data") or {}
    if data:
        lines += [f"Data: {data.get('source', '')}; {data.get('samples', '?')} samples from "
                  f"{data.get('patients', '?')} patients; split {data.get('split', {})}.", ""]
    if summary.get("slices_of"):
        lines += [f"2D slice-based solution of {summary['slices_of'].upper()} ({data.get('slices', 'axial slices')}); "
                  f"scored on the 3D test units of {summary['slices_of']}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = summary.get("ranking") or list(summary["inits"])
    order = order + [n for n in summary["inits"] if n not in order]
    for name in order:
        e = summary["inits"][name]
        cell = cell_text(e["mean"], e["std"])
        if e.get("best"):
            cell = f"**{cell}**"
        elif e.get("not_significant"):
            cell = f"{cell} {NOT_SIGNIFICANT_MARK}"
        p = e.get("p_value")
        p_text = MISSING if p is None or not math.isfinite(p) else f"{p:.3g}"
        row = [name, cell, *[cell_text(e[m]["mean"], e[m]["std"]) for m in others], str(e["n"]), str(e["failed"]), p_text,
               _versus_best(e, summary["alpha"])]
        lines.append("| " + " | ".join(row) + " |")
    for name in summary.get("init_names", []):
        if name not in summary["inits"]:
            lines.append("| " + " | ".join([name, MISSING, *[MISSING for _ in others], "0", "0", MISSING, "no trial yet"]) + " |")
    lines += ["", f"{summary['test']}; α = {summary['alpha']}. **Bold**: best mean; {NOT_SIGNIFICANT_MARK}: "
              "not significantly different from the best. Failed (diverged) trials are excluded from mean and s.d.", ""]
    if summary.get("labels"):
        lines += per_label_markdown(summary, order)
    if test_set_text(summary):
        lines += [test_set_text(summary), ""]
    if scoring_note(summary):
        lines += [scoring_note(summary), ""]
    lines += overlap_notes(summary)
    return "\n".join(lines)


def overlap_notes(summary: dict[str, Any]) -> list[str]:
    """Markdown lines (each followed by a blank line) about initialisations pretrained on test patients
    (allowed by ``finetune.allow_pretraining_overlap``) or whose pretraining patients are not recorded."""
    lines: list[str] = []
    for name, check in (summary.get("pretraining_overlap") or {}).items():
        if check.get("status") == "allowed":
            lines += [f"**Leakage**: {name} was pretrained on {len(check.get('patients', []))} of the "
                      f"{check.get('test_patients', '?')} test patients (finetune.allow_pretraining_overlap=true); "
                      "its scores are inflated.", ""]
        elif check.get("status") == "unchecked":
            lines += [f"Note: the weights of {name} record no pretraining patients; leakage into the test set "
                      "cannot be checked.", ""]
    return lines


def per_label_markdown(summary: dict[str, Any], order: Sequence[str]) -> list[str]:
    """Lines of the per-label table of a multi-label summary: one row per label, one column per
    initialisation (mean ± s.d. of the label's test AUC in %; ``n/a`` where the test split has no
    positive, or no negative, of the label, so it has no AUC and is left out of the mean)."""
    names = [n for n in order if "per_label" in summary["inits"].get(n, {})]
    if not names:
        return []
    label = metric_label(summary, summary["metric"])
    lines = [f"Per-label test {label} % (mean ± s.d. over trials):", "",
             "| label | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    missing: list[str] = []
    for disease in summary["labels"]:
        cells = []
        for name in names:
            e = summary["inits"][name]["per_label"][disease]
            cells.append(cell_text(e["mean"], e["std"]) if e["n"] else "n/a")
        if all(c == "n/a" for c in cells):
            missing.append(disease)
        lines.append(f"| {disease} | " + " | ".join(cells) + " |")
    lines.append("")
    note = ("n/a: the test split holds no positive (or no negative) of the label, so its AUC is undefined; the mean "
            f"{label} averages the labels that have one")
    lines += [note + (f" (n/a here: {', '.join(missing)})." if missing else "."), ""]
    return lines


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                          ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        text = text.replace(char, escaped)
    return text


def latex_table(summaries: Sequence[dict[str, Any]], caption: str | None = None, label: str = "tab:transfer") -> str:
    """A booktabs LaTeX table: initialisations x tasks, cells mean $\\pm$ s.d. (%).

    The best initialisation of a column is bold, a dagger marks "not significantly different from
    the best", a dash an initialisation the task was not run with. Needs ``\\usepackage{booktabs}``.
    """
    inits: list[str] = []
    for s in summaries:
        inits += [n for n in s["inits"] if n not in inits]
    trials = sorted({str(s.get("trials_per_init")) for s in summaries if s.get("trials_per_init")})
    if caption is None:
        caption = (f"Transfer results: mean $\\pm$ s.d. (\\%) over {', '.join(trials) or 'the'} trials per "
                   "initialisation. Bold: best in the column; $^\\dagger$: not significantly different from "
                   f"the best ({test_name(summaries)} two-sample t-test, $p \\geq 0.05$).")
    partial = [s for s in summaries if progress_note(s)]
    if partial:
        caption += " Partial results: " + "; ".join(f"{s['task'].upper()} {progress_note(s)[9:]}" for s in partial) + "."
    header = ["Initialisation"] + [
        f"{_latex_escape(s['task'].upper())} {_latex_escape(metric_label(s, s['metric']))} (\\%)"
        + (f" [{_latex_escape(setting_text(s))}]" if setting_text(s) else "")
        for s in summaries
    ]
    lines = [
        "% written by semantic-genesis; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        "\\begin{tabular}{l" + "c" * len(summaries) + "}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
    ]
    for name in inits:
        cells = [_latex_escape(name)]
        for s in summaries:
            e = s["inits"].get(name)
            if e is None:
                cells.append("--")
                continue
            if not math.isfinite(e["mean"]):
                cells.append("all failed" if e.get("failed") else "n/a")
                continue
            value = f"{percent_text(e['mean'])} $\\pm$ {percent_text(e['std'])}" if math.isfinite(e["std"]) else percent_text(e["mean"])
            if e.get("best"):
                value = f"\\textbf{{{value}}}"
            elif e.get("not_significant"):
                value += "$^\\dagger$"
            cells.append(value)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if any(name not in s["inits"] for s in summaries for name in inits):
        lines.append("\\\\[2pt] {\\footnotesize --: not evaluated with this initialisation.}")
    for s in summaries:
        if test_set_text(s):
            lines.append(f"\\\\[2pt] {{\\footnotesize {_latex_escape(s['task'].upper())}: {_latex_escape(test_set_text(s))}}}")
    lines += ["\\end{table}", ""]
    return "\n".join(lines)


BAR_COLOURS = {"best": "tab:orange", "not significantly different": "tab:blue", "significantly worse": "0.45",
               MISSING: "0.78"}
LEGEND_LABELS = {"best": "best mean", "not significantly different": "not significantly different from the best",
                 "significantly worse": "significantly worse (p < 0.05)", MISSING: "no t-test (fewer than 2 trials)"}


def _metric_limits(panels: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """A common y-range (in %) per metric over all panels showing it, covering bars, error bars and trials."""
    limits: dict[str, tuple[float, float]] = {}
    for summary in panels:
        values = []
        for e in summary["inits"].values():
            if math.isfinite(e["mean"]):
                sd = e["std"] if math.isfinite(e["std"]) else 0.0
                values += [e["mean"] - sd, e["mean"] + sd]
            values += [v for v in e["values"] if v is not None and math.isfinite(v)]
        if not values:
            continue
        lo, hi = 100 * min(values), 100 * max(values)
        old = limits.get(summary["metric"])
        if old is not None:
            lo, hi = min(lo, old[0]), max(hi, old[1])
        limits[summary["metric"]] = (lo, hi)
    padded = {}
    for metric, (lo, hi) in limits.items():
        pad = max(2.0, 0.1 * (hi - lo))
        padded[metric] = (max(0.0, lo - pad), min(100.0, hi + pad))
    return padded


def bar_chart(panels: list[dict[str, Any]], path: Path) -> Path:
    """Bar charts of mean ± s.d. (one panel per task summary) with the trials as dots, saved as PNG.

    Panels of the same metric share their y-axis; every panel has the same initialisations on its
    x-axis (those a task was not run with are marked "not run"); one legend explains the colours.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from semantic_genesis.utils.atomic import write_figure

    names: list[str] = []
    for summary in panels:
        for name in [*summary.get("init_names", []), *summary["inits"]]:
            if name not in names:
                names.append(name)
    limits = _metric_limits(panels)
    shown: set[str] = set()
    width = max(3.4, 0.9 * len(names) + 1.6)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.0), squeeze=False)
    for ax, summary in zip(axes[0], panels):
        label = metric_label(summary, summary["metric"])
        lo, hi = limits.get(summary["metric"], (0.0, 100.0))
        for i, name in enumerate(names):
            e = summary["inits"].get(name)
            if e is None or not math.isfinite(e["mean"]):
                reason = ("not run yet" if name in summary.get("init_names", []) else "not run") if e is None else "all trials failed"
                shown.add("not run")
                ax.bar(i, hi - lo, bottom=lo, color="none", edgecolor="0.6", hatch="//", linewidth=0.8)
                ax.text(i, lo + 0.5 * (hi - lo), reason, rotation=90, ha="center", va="center", fontsize=8,
                        color="0.3", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
                continue
            status = _versus_best(e, summary["alpha"])
            shown.add(status)
            sd = 100 * e["std"] if math.isfinite(e["std"]) else 0.0
            ax.bar(i, 100 * e["mean"] - lo, bottom=lo, yerr=sd, capsize=4, color=BAR_COLOURS[status], alpha=0.85,
                   error_kw={"elinewidth": 1.2})
            pts = [100 * v for v in e["values"] if v is not None and math.isfinite(v)]
            ax.scatter([i] * len(pts), pts, s=12, color="black", zorder=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=25, ha="right")
        ax.set_ylim(lo, hi)
        ax.set_ylabel(f"test {label} (%)")
        ax.grid(axis="y", color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
        n = summary.get("trials_per_init")
        title = f"{summary['task'].upper()}: {label}, mean ± s.d." + (f" over {n} trials" if n else "")
        note = progress_note(summary)
        ax.set_title(title + (f"\n({note})" if note else ""), fontsize=10)
    handles = [Patch(color=BAR_COLOURS[k], label=label) for k, label in LEGEND_LABELS.items() if k in shown]
    handles.append(Line2D([], [], marker="o", color="black", linestyle="none", markersize=4, label="one trial"))
    if "not run" in shown:
        handles.append(Patch(facecolor="none", edgecolor="0.6", hatch="//", label="not run / all trials failed"))
    columns = max(1, min(len(handles), int(width * len(panels) / 2.8)))
    rows = math.ceil(len(handles) / columns)
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.045 * rows + 0.02, 1, 1))
    write_figure(path, fig, dpi=150)
    return path


def write_results(out: Path, task: "Task", metric: str, init_names: Sequence[str], records: Sequence[TrialRecord],
                  data_info: dict[str, Any] | None = None, trials: int | None = None,
                  iou_definition: str | None = None, equal_var: bool = True,
                  setting: dict[str, Any] | None = None,
                  pretraining_overlap: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``results.csv``, ``results.json``, ``results.md`` and ``results.png`` for one task; returns the summary.

    Args:
        equal_var: Student's t-test (True, as the papers) or Welch's (False).
        setting: ``{"mode": "finetune" | "linear_probe", "label_fraction": f}`` of this evaluation,
            recorded in the summary and shown in the headings.
        pretraining_overlap: per initialisation, the summary of its check against the test patients
            (:class:`~semantic_genesis.finetune.leakage.OverlapCheck`); allowed overlaps and unchecked
            weights are noted under the table.
    """
    from semantic_genesis.utils.atomic import write_json, write_text

    out = Path(out)
    metric_names = list(task.metrics) + [f"{metric}/{label}" for label in label_names_of(task)]
    buffer = io.StringIO()
    fields = ["task", "init", "trial", "seed", "status", *metric_names, "epochs", "best_epoch", "seconds", "error"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for r in records:
        writer.writerow({"task": task.name, **r.row(metric_names)})
    write_text(out / "results.csv", buffer.getvalue())
    summary = summarize_records(task, metric, init_names, records, equal_var=equal_var)
    summary.update(setting or {})
    summary["init_names"] = list(init_names)
    summary["trials_per_init"] = trials
    summary["trials_done"] = len(records)
    summary["trials_expected"] = trials * len(init_names) if trials else None
    summary["complete"] = not progress_note(summary)
    summary["data"] = data_info or {}
    if iou_definition and task.kind == "segmentation":
        summary["iou_definition"] = iou_definition  # shown in the column labels and under the table
    if pretraining_overlap:
        summary["pretraining_overlap"] = pretraining_overlap
    write_json(out / "results.json", nan_to_none(summary))
    note = progress_note(summary)
    title = f"# Transfer results: {task.name}" + (f" ({note})" if note else "")
    write_text(out / "results.md", title + "\n\n" + task_markdown(summary))
    if summary["best"] is not None:
        write_text(out / "results.tex", latex_table([summary], label=f"tab:{task.name}"))
        bar_chart([summary], out / "results.png")
    return summary
