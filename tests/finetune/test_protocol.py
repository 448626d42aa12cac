import csv
import json
import math

import pytest
from scipy import stats as sps

from semantic_genesis.cli import main
from semantic_genesis.finetune import protocol, trainer
from semantic_genesis.finetune.models import InitSpec
from semantic_genesis.models.unet3d import UNet3D
from semantic_genesis.models.weights import save_weights
from semantic_genesis.report.results import merge_results

from .conftest import blob_task, tiny_config


REAL_RUN = trainer.run_finetune


def _count_runs(monkeypatch, stop_after=None):
    calls = []
    real = REAL_RUN

    def counted(*args, **kwargs):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append((args[4].name, args[6]))
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_finetune", counted)
    return calls


def test_protocol_outputs_statistics_and_resume(tmp_path, monkeypatch):
    data = blob_task("classification", n=36, patients=5)
    cfg = tiny_config("train.epochs=2", "finetune.task=ncc")
    net = UNet3D(width=0.125)
    mg = save_weights(net, tmp_path / "mg.safetensors", {"method": "models_genesis"})
    inits = [InitSpec("scratch"), InitSpec("mg", mg)]
    out = tmp_path / "eval"

    calls = _count_runs(monkeypatch, stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        protocol.run_protocol(cfg, None, inits, 2, out, log=lambda s: None, data=data)
    assert len(calls) == 3
    calls = _count_runs(monkeypatch)
    summary = protocol.run_protocol(cfg, None, inits, 2, out, log=lambda s: None, data=data)
    assert calls == [("mg", protocol.trial_seed(0, 1))]  # only the unfinished trial ran
    calls = _count_runs(monkeypatch)
    protocol.run_protocol(cfg, None, inits, 2, out, log=lambda s: None, data=data)
    assert calls == []

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["init"], r["trial"], r["status"]) for r in rows] == [
        ("scratch", "0", "ok"), ("scratch", "1", "ok"), ("mg", "0", "ok"), ("mg", "1", "ok")]
    assert rows[0]["seed"] == rows[2]["seed"] != rows[1]["seed"]  # trial k shares its seed across inits
    saved = json.loads((out / "results.json").read_text())
    vals = {n: [float(r["auc"]) for r in rows if r["init"] == n] for n in ("scratch", "mg")}
    best = saved["best"]
    other = "mg" if best == "scratch" else "scratch"
    assert saved["inits"][best]["mean"] == pytest.approx(sum(vals[best]) / 2)
    if len(set(vals[best] + vals[other])) > 2:
        assert saved["inits"][other]["p_value"] == pytest.approx(sps.ttest_ind(vals[best], vals[other]).pvalue)
    assert summary["inits"]["scratch"]["n"] == 2
    md = (out / "results.md").read_text()
    assert "| initialisation |" in md and "**" in md
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_diverged_trials_are_recorded_as_failed(tmp_path):
    data = blob_task("classification", n=36, patients=5)
    cfg = tiny_config("train.epochs=2", "finetune.task=ncc")
    bad = tiny_config("train.epochs=2", "finetune.task=ncc", "optim.lr=1e30")
    protocol.run_protocol(cfg, None, [InitSpec("ok")], 2, tmp_path / "a", log=lambda s: None, data=data)
    summary = protocol.run_protocol(bad, None, [InitSpec("bad")], 2, tmp_path / "b", log=lambda s: None, data=data)
    rows = list(csv.DictReader((tmp_path / "b" / "results.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "failed"] and "diverged" in rows[0]["error"]
    assert summary["inits"]["bad"]["failed"] == 2 and summary["best"] is None
    merged = merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    text = merged.read_text()
    assert "| ok |" in text and "NCC AUC%" in text and "(2 failed)" in text


def test_cli_evaluate_on_phantom_and_report(phantom_root, tmp_path, capsys):
    common = ["--config", "finetune_tiny", "finetune.crop_size=[16,16,8]", "model.width=0.125",
              "train.epochs=1", "train.device=cpu", "finetune.max_negatives=6"]
    assert main(["evaluate", "--task", "ncc", "--data", str(phantom_root / "luna16"), "--inits", "scratch",
                 "--trials", "2", "--out", str(tmp_path / "ncc"), *common]) == 0
    assert main(["finetune", "--task", "ncs", "--init", "scratch", "--data", str(phantom_root / "native"),
                 "--out", str(tmp_path / "ncs_run"), *common]) == 0
    result = json.loads((tmp_path / "ncs_run" / "result.json").read_text())
    assert math.isfinite(result["test"]["iou"]) and (tmp_path / "ncs_run" / "config.yaml").is_file()
    assert main(["report", "results", str(tmp_path / "ncc"), "--out", str(tmp_path / "table")]) == 0
    assert "NCC AUC%" in (tmp_path / "table" / "results.md").read_text()
    assert main(["evaluate", "--task", "ncc", "--data", str(tmp_path / "nowhere"), "--inits", "scratch",
                 "--out", str(tmp_path / "x"), *common]) == 2
    assert "data folder of task ncc not found" in capsys.readouterr().err
