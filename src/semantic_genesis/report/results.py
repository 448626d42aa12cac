"""``semantic-genesis report results``: merge the ``evaluate`` folders of several tasks into one table.

The table is shaped like Semantic Genesis (Haghighi et al., MICCAI 2020) Table 2 (rows:
initialisations; columns: tasks), written as ``results.md``, ``results.tex`` and ``results.csv``
(+ ``results.png`` with one panel per task, a common y-axis per metric). Marks, as in the paper's
table: the best initialisation of a column is **bold**; † marks initialisations whose difference from
the best is not significant (independent two-sample t-test, p >= 0.05); an initialisation a task was
not run with is marked as missing. Each task's own files are written by the trials protocol
(:mod:`semantic_genesis.finetune.results`).
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
    from semantic_genesis.finetune.results import (
        MISSING, NOT_SIGNIFICANT_MARK, cell_text, metric_label, percent_text, progress_note,
    )

    inits: list[str] = []
    for s in summaries:
        inits += [n for n in s["inits"] if n not in inits]
    columns = [f"{s['task'].upper()} {metric_label(s, s['metric'])}%"
               + (f" ({progress_note(s)})" if progress_note(s) else "") for s in summaries]
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
    """Merge ``evaluate`` folders into ``OUT/results.md``, ``.tex``, ``.csv`` and ``.png``; returns the md path."""
    from semantic_genesis.finetune.results import (
        MISSING, NOT_SIGNIFICANT_MARK, bar_chart, latex_table, progress_note, scoring_note,
    )
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
    if any(s["inits"].get(n) is None for s in summaries for n in {m for t in summaries for m in t["inits"]}):
        text += [f"{MISSING}: the task was not evaluated with this initialisation.", ""]
    for s, folder in zip(summaries, folders):
        note = f"; {progress_note(s)}" if progress_note(s) else ""
        source = (s.get("data") or {}).get("source", "")
        details = "; ".join(d for d in (source, note[2:]) if d)
        text.append(f"- {s['task'].upper()}: {Path(folder)}" + (f" ({details})" if details else "")
                    + (f". {scoring_note(s)}" if scoring_note(s) else ""))
    write_text(out / "results.md", "\n".join(text) + "\n")
    panels = [s for s in summaries if s.get("best") is not None]
    if panels:
        write_text(out / "results.tex", latex_table(panels))
    if panels:
        bar_chart(panels, out / "results.png")
    return out / "results.md"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="DIR", help="output folders of 'semantic-genesis evaluate'")
    parser.add_argument("--out", required=True, help="folder for results.md, results.tex, results.csv and results.png")


def run_report(args: argparse.Namespace) -> int:
    path = merge_results(args.folders, args.out)
    print(path.read_text(encoding="utf-8"))
    written = [path.with_suffix(s) for s in (".tex", ".csv", ".png") if path.with_suffix(s).is_file()]
    print(f"wrote {path}" + "".join(f", {p}" for p in written))
    return 0
