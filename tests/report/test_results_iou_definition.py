"""The results tables say which IoU they report (finetune.iou)."""

from __future__ import annotations

from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.results import TrialRecord, write_results
from semantic_genesis.report.results import load_summary, merge_results


def _records(values):
    return [TrialRecord(init, k, k, "ok", {"iou": v, "dice": v + 0.1}, 3, 2, 1.0, None)
            for init, vs in values.items() for k, v in enumerate(vs)]


def test_segmentation_tables_name_the_iou_definition(tmp_path):
    records = _records({"scratch": [0.70, 0.72, 0.71], "genesis": [0.80, 0.79, 0.81]})
    write_results(tmp_path / "lcs", tasks.get("lcs"), "iou", ["scratch", "genesis"], records, trials=3,
                  iou_definition="pooled")
    md = (tmp_path / "lcs" / "results.md").read_text()
    assert "IoU (pooled) % (mean ± s.d.)" in md and "Dice (pooled) %" in md
    assert "IoU definition `pooled`: IoU and Dice pooled over all test voxels" in md
    assert load_summary(tmp_path / "lcs")["iou_definition"] == "pooled"
    write_results(tmp_path / "lcs2", tasks.get("lcs"), "iou", ["scratch", "genesis"], records, trials=3,
                  iou_definition="per_case")
    merged = merge_results([tmp_path / "lcs", tmp_path / "lcs2"], tmp_path / "merged").read_text()
    assert "LCS IoU (pooled)%" in merged and "LCS IoU (per case)%" in merged
    assert "averaged over test cases" in merged


def test_classification_tables_carry_no_iou_definition(tmp_path):
    records = [TrialRecord("scratch", k, k, "ok", {"auc": 0.9}, 3, 2, 1.0, None) for k in range(2)]
    summary = write_results(tmp_path, tasks.get("ncc"), "auc", ["scratch"], records, trials=2, iou_definition="pooled")
    assert "iou_definition" not in summary and "definition" not in (tmp_path / "results.md").read_text()
