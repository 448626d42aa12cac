"""The 3D volume-based vs 2D slice-based comparison of ``report results`` (Semantic Genesis, Haghighi
et al., MICCAI 2020, Fig. 3: "3D Semantic Genesis beats every 2D slice-based solution" on NCC and NCS).

Given the ``evaluate`` folders of a 3D task (``ncc``, ``ncs``) and of its slice-based task (``ncc2d``,
``ncs2d``, whose summaries name the 3D task as ``slices_of``), :func:`dims_tables` builds one table per
3D task: every initialisation of both evaluations as a row with a ``dims`` column (3D / 2D), mean ±
s.d. of the task's metric, and the t-test of each row against the best row of **both** (Student's, or
Welch's when the summaries say so). The rows are comparable because the slice-based task is scored on
the 3D task's test units; the tests' fingerprints (``data.test.fingerprint``, written by ``evaluate``)
are compared and a mismatch is stated above the table, which is then not drawn in bold.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def dims_pairs(summaries: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(3D summary, 2D slice-based summary)`` pairs of the same setting (mode, label fraction)."""
    pairs = []
    for two in summaries:
        base = two.get("slices_of")
        if not base:
            continue
        for three in summaries:
            if (three["task"] == base and three.get("mode") == two.get("mode")
                    and three.get("label_fraction") == two.get("label_fraction")):
                pairs.append((three, two))
                break
    return pairs


def _fingerprint(summary: dict[str, Any]) -> str | None:
    return ((summary.get("data") or {}).get("test") or {}).get("fingerprint")


def dims_rows(three: dict[str, Any], two: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of one 3D-vs-2D table, best first, and a note when the test units differ (else None).

    Each row: ``dims`` (``"3D"`` / ``"2D slices"``), ``init``, ``mean``, ``std``, ``n``, ``failed``,
    ``p_value`` vs the best row, ``mark`` (``best`` / ``ns`` / ``""``).
    """
    from semantic_genesis.finetune.stats import compare_to_best

    welch = "Welch" in three.get("test", "") or "Welch" in two.get("test", "")
    entries = {("3D", name): e for name, e in three["inits"].items()}
    entries.update({("2D slices", name): e for name, e in two["inits"].items()})
    values = {key: e.get("values", []) for key, e in entries.items()}
    has_values = any(any(v is not None and math.isfinite(v) for v in vals) for vals in values.values())
    comparison = compare_to_best(values, alpha=float(three.get("alpha", 0.05)), equal_var=not welch) if has_values else None
    rows = []
    for key in (comparison.ranking if comparison else list(entries)):
        e = entries[key]
        mark = ""
        if comparison is not None:
            mark = "best" if key == comparison.best else ("ns" if comparison.not_significant.get(key) else "")
        rows.append({"dims": key[0], "init": key[1], "mean": e["mean"], "std": e["std"], "n": e.get("n", 0),
                     "failed": e.get("failed", 0), "p_value": comparison.p_values.get(key, math.nan) if comparison else math.nan,
                     "mark": mark})
    a, b = _fingerprint(three), _fingerprint(two)
    note = None
    if a is None or b is None:
        note = "the test units cannot be compared (an evaluation predates test-set fingerprints)"
    elif a != b:
        note = (f"the test units differ ({three['task']} {a}, {two['task']} {b}): the evaluations read other data or "
                "another split, so their rows are not comparable")
    return rows, note


def dims_markdown(three: dict[str, Any], two: dict[str, Any]) -> list[str]:
    """Markdown lines of one 3D-vs-2D table (heading, note, table, legend)."""
    from semantic_genesis.finetune.results import MISSING, NOT_SIGNIFICANT_MARK, cell_text, metric_label, test_name

    rows, note = dims_rows(three, two)
    label = metric_label(three, three["metric"])
    lines = [f"### {three['task'].upper()}: 3D volume-based vs 2D slice-based ({two['task']})", ""]
    if note:
        lines += [f"**Not comparable**: {note}.", ""]
    lines += [f"| dims | initialisation | {label} % (mean ± s.d.) | trials ok | failed | p vs best |",
              "|---|---|---|---|---|---|"]
    for row in rows:
        cell = cell_text(row["mean"], row["std"])
        if row["mark"] == "best" and not note:
            cell = f"**{cell}**"
        elif row["mark"] == "ns":
            cell = f"{cell} {NOT_SIGNIFICANT_MARK}"
        p = row["p_value"]
        lines.append(f"| {row['dims']} | {row['init']} | {cell} | {row['n']} | {row['failed']} | "
                     f"{MISSING if not math.isfinite(p) else f'{p:.3g}'} |")
    lines += ["", f"Both on the same test units ({three['task']}'s crops; the 2D rows aggregate their slice predictions "
              f"per {'candidate' if three.get('kind') == 'classification' else '3D mask'}). **Bold**: best of all rows; "
              f"{NOT_SIGNIFICANT_MARK}: not significantly different from it ({test_name([three, two])} independent "
              "two-sample t-test, two-sided, p >= 0.05).", ""]
    return lines


def dims_latex(three: dict[str, Any], two: dict[str, Any], label: str) -> str:
    """One 3D-vs-2D table as booktabs LaTeX (needs ``\\usepackage{booktabs}``): dims, initialisation, mean
    $\\pm$ s.d. (%), the best of all rows bold, a dagger for "not significantly different from it"."""
    from semantic_genesis.finetune.results import _latex_escape, metric_label, percent_text, test_name

    rows, note = dims_rows(three, two)
    caption = (f"{_latex_escape(three['task'].upper())}: 3D volume-based vs 2D slice-based "
               f"({_latex_escape(two['task'])}) on the same test units, mean $\\pm$ s.d. (\\%). Bold: best of all rows; "
               f"$^\\dagger$: not significantly different from it ({test_name([three, two])} two-sample t-test, "
               "$p \\geq 0.05$).")
    if note:
        caption += f" Not comparable: {_latex_escape(note)}."
    lines = ["% written by semantic-genesis; needs \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering",
             f"\\caption{{{caption}}}", f"\\label{{{label}}}", "\\begin{tabular}{llc}", "\\toprule",
             f"Dims & Initialisation & {_latex_escape(metric_label(three, three['metric']))} (\\%) \\\\", "\\midrule"]
    for row in rows:
        if not math.isfinite(row["mean"]):
            value = "all failed" if row["failed"] else "n/a"
        else:
            value = percent_text(row["mean"]) + (f" $\\pm$ {percent_text(row['std'])}" if math.isfinite(row["std"]) else "")
            if row["mark"] == "best" and not note:
                value = f"\\textbf{{{value}}}"
            elif row["mark"] == "ns":
                value += "$^\\dagger$"
        lines.append(f"{_latex_escape(row['dims'])} & {_latex_escape(row['init'])} & {value} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def dims_csv_rows(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[list[str]]:
    """CSV rows (header first) of every 3D-vs-2D table: task, dims, initialisation, mean, sd, n, p, mark (%)."""
    from semantic_genesis.finetune.results import percent_text

    out = [["task", "label_fraction", "mode", "dims", "initialisation", "mean", "sd", "trials_ok", "p_value", "mark",
            "comparable"]]
    for three, two in pairs:
        rows, note = dims_rows(three, two)
        for row in rows:
            p = row["p_value"]
            out.append([three["task"], f"{float(three.get('label_fraction', 1.0)):g}", three.get("mode", "finetune"),
                        row["dims"], row["init"], percent_text(row["mean"]), percent_text(row["std"]), str(row["n"]),
                        "" if not math.isfinite(p) else f"{p:.4g}", row["mark"], "no" if note else "yes"])
    return out
