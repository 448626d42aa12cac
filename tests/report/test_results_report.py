"""``report results`` and the per-task results files of ``evaluate``: tables, LaTeX, partial marks, chart."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from semantic_genesis.finetune.results import _metric_limits, latex_table, progress_note, write_results
from semantic_genesis.report.results import merge_results

NCC = SimpleNamespace(name="ncc", kind="classification", metrics=("auc",), metric="auc")
NCS = SimpleNamespace(name="ncs", kind="segmentation", metrics=("iou", "dice"), metric="iou")


@dataclass
class Record:
    """The fields of a trial record that the results writer reads."""

    init: str
    trial: int
    seed: int
    status: str
    metrics: dict
    epochs: int = 3
    best_epoch: int = 2
    seconds: float = 1.0
    error: str | None = None

    def row(self, names):
        return {"init": self.init, "trial": self.trial, "seed": self.seed, "status": self.status,
                **{m: self.metrics.get(m, math.nan) for m in names}, "epochs": self.epochs,
                "best_epoch": self.best_epoch, "seconds": self.seconds, "error": self.error or ""}


def records(values: dict, metrics=("auc",)) -> list[Record]:
    out = []
    for name, vals in values.items():
        for k, v in enumerate(vals):
            ok = v is not None
            out.append(Record(name, k, k, "ok" if ok else "failed", {m: v for m in metrics} if ok else {}))
    return out


NCC_VALUES = {"scratch": [0.86, 0.90, 0.92], "models_genesis": [0.85, 0.89, 0.88], "semantic_genesis": [0.93, 0.90, 0.91]}


def test_interim_results_are_marked_partial_until_complete(tmp_path):
    names = list(NCC_VALUES)
    done = records(NCC_VALUES)
    write_results(tmp_path, NCC, "auc", names, done[:2], trials=3)
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("# Transfer results: ncc (partial: 2/9 trials done)")
    assert "**Partial: 2/9 trials done**" in md
    assert "| models_genesis | — | 0 | 0 | — | no trial yet |" in md  # inits without a trial are listed
    saved = json.loads((tmp_path / "results.json").read_text())
    assert (saved["complete"], saved["trials_done"], saved["trials_expected"]) == (False, 2, 9)
    write_results(tmp_path, NCC, "auc", names, done, trials=3)
    md = (tmp_path / "results.md").read_text()
    assert "partial" not in md.lower() and json.loads((tmp_path / "results.json").read_text())["complete"] is True


def test_markdown_has_no_empty_header_and_says_how_each_compares(tmp_path):
    write_results(tmp_path, NCS, "iou", ["scratch", "semantic_genesis"],
                  records({"scratch": [0.40, 0.45, 0.41], "semantic_genesis": [0.48, 0.47, 0.46]}, ("iou", "dice")), trials=3)
    lines = (tmp_path / "results.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| initialisation"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert all(cells) and cells[-1] == "vs best"
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| s")}
    assert rows["semantic_genesis"].rstrip().endswith("| best |") and "**47.00 ± 1.00**" in rows["semantic_genesis"]
    assert rows["scratch"].rstrip().endswith("| significantly worse |")


def test_latex_table_is_booktabs_with_bold_best_and_daggers(tmp_path):
    write_results(tmp_path / "ncc", NCC, "auc", list(NCC_VALUES), records(NCC_VALUES), trials=3)
    tex = (tmp_path / "ncc" / "results.tex").read_text()
    for command in ("\\begin{tabular}{lc}", "\\toprule", "\\midrule", "\\bottomrule", "\\label{tab:ncc}"):
        assert command in tex
    assert "semantic\\_genesis & \\textbf{91.33 $\\pm$ 1.53} \\\\" in tex
    assert "scratch & 89.33 $\\pm$ 3.06$^\\dagger$ \\\\" in tex  # p >= 0.05 vs the best
    assert "models\\_genesis & 87.33 $\\pm$ 2.08$^\\dagger$ \\\\" in tex
    assert tex.count("{") == tex.count("}")


def test_merged_table_marks_missing_and_failed_initialisations(tmp_path):
    write_results(tmp_path / "ncc", NCC, "auc", list(NCC_VALUES), records(NCC_VALUES), trials=3)
    ncs = {"scratch": [0.40, 0.45, 0.41], "semantic_genesis": [0.48, 0.47, 0.46], "rubiks_cube": [None, None, None]}
    write_results(tmp_path / "ncs", NCS, "iou", list(ncs), records(ncs, ("iou", "dice")), trials=3)
    md_path = merge_results([tmp_path / "ncc", tmp_path / "ncs"], tmp_path / "merged")
    md = md_path.read_text()
    assert "| models_genesis | 87.33 ± 2.08 † | — |" in md
    assert "| rubiks_cube | — | n/a (3 failed) |" in md
    assert "—: the task was not evaluated with this initialisation." in md
    tex = (tmp_path / "merged" / "results.tex").read_text()
    assert "models\\_genesis & 87.33 $\\pm$ 2.08$^\\dagger$ & -- \\\\" in tex
    assert "rubiks\\_cube & -- & all failed \\\\" in tex
    assert (tmp_path / "merged" / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_panels_of_one_metric_share_the_y_axis():
    def summary(task, metric, values):
        inits = {n: {"mean": sum(v) / len(v), "std": 0.01, "values": v} for n, v in values.items()}
        return {"task": task, "metric": metric, "inits": inits}

    ncs = summary("ncs", "iou", {"a": [0.40, 0.42], "b": [0.45, 0.47]})
    lcs = summary("lcs", "iou", {"a": [0.80, 0.82], "b": [0.85, 0.90]})
    ncc = summary("ncc", "auc", {"a": [0.60, 0.62]})
    limits = _metric_limits([ncs, lcs, ncc])
    lo, hi = limits["iou"]
    assert lo < 40 and hi > 90  # one range covering both IoU panels
    assert limits["auc"][0] > 50 and limits["auc"][1] < 70


def test_progress_note():
    assert progress_note({"trials_done": 2, "trials_expected": 6}) == "partial: 2/6 trials done"
    assert progress_note({"trials_done": 6, "trials_expected": 6}) == ""
    assert progress_note({}) == ""  # results.json written before the marks existed


@pytest.mark.parametrize("name", ["a_b", "50%", "x&y"])
def test_latex_escapes_initialisation_names(name):
    summary = {"task": "ncc", "metric": "auc", "trials_per_init": 2,
               "inits": {name: {"mean": 0.5, "std": 0.1, "best": True, "values": [0.4, 0.6]}}}
    tex = latex_table([summary])
    row = next(line for line in tex.splitlines() if line.endswith("\\\\") and "textbf" in line)
    assert row.split(" & ")[0] == name.replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")
