"""``semantic-genesis report results``: merge the ``evaluate`` folders of several tasks into one table.

The table is shaped like Semantic Genesis (Haghighi et al., MICCAI 2020) Table 2 (rows:
initialisations; columns: tasks), written as ``results.md``, ``results.tex`` and ``results.csv``
(+ ``results.png`` with one panel per task, a common y-axis per metric). Marks, as in the paper's
table: the best initialisation of a column is **bold**; † marks initialisations whose difference from
the best is not significant (independent two-sample t-test, Student's unless ``finetune.ttest=welch``,
p >= 0.05); an initialisation a task was
not run with is marked as missing. Each task's own files are written by the trials protocol
(:mod:`semantic_genesis.finetune.results`).

An ``evaluate`` folder of a sweep (``--label-fractions`` / ``--mode``, indexed by ``sweep.json``)
contributes every setting: one table per label fraction, a linear-probe column beside each task's
fine-tuning column, and ``label_efficiency.png`` (:mod:`semantic_genesis.report.label_efficiency`).
Under every table: the test set's patients, samples and positives, so a reader can judge the tests.

The folders of a 3D task and of its 2D slice-based solution (``ncc`` and ``ncc2d``, ``ncs`` and
``ncs2d``) also give the Fig.-3-shaped comparison (:mod:`semantic_genesis.report.dims`): per task one
table with a ``dims`` column (3D / 2D slices), all initialisations of both, t-tests against the best of
all rows, written into ``results.md`` and ``dims.csv``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

REPORT_NAME = "results"
REPORT_HELP = "merge evaluate folders of several tasks into one Table-2-shaped table (Markdown, LaTeX, CSV, PNG)"
DIMS_CSV = "dims.csv"  # the 3D vs 2D slice-based tables, when a 3D task and its slice-based task are merged


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


def load_evaluations(folder: str | Path) -> list[dict[str, Any]]:
    """The summaries of one ``evaluate`` folder: one, or one per setting of a sweep (``sweep.json``).

    Each summary gets ``folder`` (where its files are); a sweep's settings also get ``mode`` and
    ``label_fraction`` from the index when their ``results.json`` predates them.

    Raises:
        DataError: no ``results.json`` / ``sweep.json``, or a sweep whose settings have no results yet.
    """
    from semantic_genesis.errors import DataError, describe_path
    from semantic_genesis.finetune.protocol import SWEEP_FILE

    folder = Path(folder)
    index_path = folder / SWEEP_FILE
    if not index_path.is_file():
        summary = load_summary(folder)
        summary["folder"] = str(folder)
        return [summary]
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        settings = list(index["settings"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{describe_path(index_path)}: not a sweep index of 'semantic-genesis evaluate' ({exc})") from None
    summaries = []
    for setting in settings:
        sub = folder / setting["folder"]
        if not (sub / "results.json").is_file():
            continue  # not started yet: the sweep is partial
        summary = load_summary(sub)
        summary.setdefault("mode", setting.get("mode", "finetune"))
        summary.setdefault("label_fraction", float(setting.get("label_fraction", 1.0)))
        summary["folder"] = str(sub)
        summaries.append(summary)
    if not summaries:
        raise DataError(f"{describe_path(folder)}: no setting of this sweep has results yet; rerun its evaluate command")
    return summaries


def _column(s: dict[str, Any]) -> str:
    from semantic_genesis.finetune.results import metric_label, progress_note

    mode = " linear probe" if s.get("mode") == "linear_probe" else ""
    return (f"{s['task'].upper()}{mode} {metric_label(s, s['metric'])}%"
            + (f" ({progress_note(s)})" if progress_note(s) else ""))


def merge_tables(summaries: Sequence[dict[str, Any]]) -> tuple[str, list[list[str]]]:
    """A Table-2-shaped markdown table and CSV rows: initialisations x tasks, cells mean ± s.d. (%)."""
    from semantic_genesis.finetune.results import MISSING, NOT_SIGNIFICANT_MARK, cell_text, percent_text

    inits: list[str] = []
    for s in summaries:
        inits += [n for n in s["inits"] if n not in inits]
    columns = [_column(s) for s in summaries]
    md = ["| initialisation | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    csv_rows = [["initialisation", *[f"{c} mean" for c in columns], *[f"{c} sd" for c in columns],
                 *[f"{c} mark" for c in columns]]]
    for name in inits:
        cells, means, sds, marks = [], [], [], []
        for s in summaries:
            e = s["inits"].get(name)
            if e is None:
                cells.append(MISSING)
                means.append("")
                sds.append("")
                marks.append("")
                continue
            cell = cell_text(e["mean"], e["std"])
            mark = "best" if e.get("best") else ("ns" if e.get("not_significant") else "")
            if e.get("failed"):
                cell += f" ({e['failed']} failed)"
            cells.append(f"**{cell}**" if mark == "best" else (f"{cell} {NOT_SIGNIFICANT_MARK}" if mark == "ns" else cell))
            means.append(percent_text(e["mean"]))
            sds.append(percent_text(e["std"]))
            marks.append(mark)
        md.append(f"| {name} | " + " | ".join(cells) + " |")
        csv_rows.append([name, *means, *sds, *marks])
    return "\n".join(md), csv_rows


def merge_results(folders: Sequence[str | Path], out: str | Path) -> Path:
    """Merge ``evaluate`` folders into ``OUT/results.md``, ``.tex``, ``.csv`` and ``.png``; returns the md path.

    With evaluations at several label fractions (``evaluate --label-fractions``) there is one table
    per fraction (fine-tuning and linear-probe columns side by side, t-tests within each column) and
    ``OUT/label_efficiency.png`` (metric vs label fraction, one line per initialisation).
    """
    from semantic_genesis.finetune.results import (
        MISSING, NOT_SIGNIFICANT_MARK, bar_chart, latex_table, progress_note, scoring_note, test_name, test_set_text,
    )
    from semantic_genesis.report.dims import dims_csv_rows, dims_latex, dims_markdown, dims_pairs
    from semantic_genesis.report.label_efficiency import plot_label_efficiency
    from semantic_genesis.utils.atomic import write_text

    summaries = [s for f in folders for s in load_evaluations(f)]
    fractions = sorted({float(s.get("label_fraction", 1.0)) for s in summaries}, reverse=True)
    out = Path(out)
    trials = sorted({str(s.get("trials_per_init")) for s in summaries})
    text = [
        "# Transfer results (Semantic Genesis Table 2 layout)", "",
        f"Mean ± s.d. (%) over {', '.join(trials)} trials per initialisation. **Bold**: best in the column; "
        f"{NOT_SIGNIFICANT_MARK}: not significantly different from the best ({test_name(summaries)} independent "
        "two-sample t-test, two-sided, p >= 0.05).", "",
    ]
    csv_rows: list[list[str]] = []
    dims_rows_csv: list[list[str]] = []
    tex = []
    for fraction in fractions:
        group = [s for s in summaries if float(s.get("label_fraction", 1.0)) == fraction]
        table, rows = merge_tables(group)
        if len(fractions) > 1:
            text += [f"## Label fraction {fraction:g} ({100 * fraction:g}% of the training patients)", ""]
            rows = [["label_fraction", *rows[0]], *[[f"{fraction:g}", *r] for r in rows[1:]]]
        csv_rows += rows if not csv_rows else rows[1:]
        text += [table, ""]
        if any(s["inits"].get(n) is None for s in group for n in {m for t in group for m in t["inits"]}):
            text += [f"{MISSING}: the task was not evaluated with this initialisation.", ""]
        for s in group:
            details = "; ".join(d for d in ((s.get("data") or {}).get("source", ""), progress_note(s)) if d)
            text.append(f"- {_column(s)}: {s['folder']}" + (f" ({details})" if details else "")
                        + (f". {test_set_text(s)}" if test_set_text(s) else "")
                        + (f" {scoring_note(s)}" if scoring_note(s) else ""))
        text.append("")
        pairs = dims_pairs(group)
        if pairs:
            text += ["## 3D volume-based vs 2D slice-based (Semantic Genesis Fig. 3)", ""]
            for three, two in pairs:
                text += dims_markdown(three, two)
            dims_rows_csv += dims_csv_rows(pairs)[0 if not dims_rows_csv else 1:]
        panels = [s for s in group if s.get("best") is not None]
        if panels:
            tex.append(latex_table(panels, label=f"tab:transfer_{fraction:g}".replace(".", "_")))
        tex += [dims_latex(three, two, f"tab:dims_{three['task']}_{fraction:g}".replace(".", "_")) for three, two in pairs]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(csv_rows)
    write_text(out / "results.csv", buffer.getvalue())
    if dims_rows_csv:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(dims_rows_csv)
        write_text(out / DIMS_CSV, buffer.getvalue())
    if len(fractions) > 1:
        plot_label_efficiency(summaries, out / "label_efficiency.png")
        text += ["![label efficiency](label_efficiency.png)", ""]
    write_text(out / "results.md", "\n".join(text))
    if tex:
        write_text(out / "results.tex", "\n".join(tex))
    panels = [s for s in summaries if s.get("best") is not None and float(s.get("label_fraction", 1.0)) == fractions[0]]
    if panels:
        bar_chart(panels, out / "results.png")
    return out / "results.md"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="DIR",
                        help="output folders of 'semantic-genesis evaluate' (single settings or label-fraction sweeps)")
    parser.add_argument("--out", required=True, help="folder for results.md, results.tex, results.csv and results.png "
                        "(+ label_efficiency.png with several label fractions)")


def run_report(args: argparse.Namespace) -> int:
    path = merge_results(args.folders, args.out)
    print(path.read_text(encoding="utf-8"))
    written = [path.with_suffix(s) for s in (".tex", ".csv", ".png") if path.with_suffix(s).is_file()]
    if (path.parent / DIMS_CSV).is_file():
        written.append(path.parent / DIMS_CSV)
    if (path.parent / "label_efficiency.png").is_file():
        written.append(path.parent / "label_efficiency.png")
    print(f"wrote {path}" + "".join(f", {p}" for p in written))
    return 0
