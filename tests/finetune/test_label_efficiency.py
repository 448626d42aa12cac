"""Label-efficiency sweeps and linear probes of ``evaluate``: nested fractions, frozen encoders, tables, curves."""

from __future__ import annotations

import json

import pytest
import torch

from semantic_genesis.cli import main
from semantic_genesis.errors import ConfigError
from semantic_genesis.finetune import protocol, trainer
from semantic_genesis.finetune.data import split_by_patient
from semantic_genesis.finetune.models import InitSpec
from semantic_genesis.models.unet3d import UNet3D
from semantic_genesis.models.weights import save_weights
from semantic_genesis.report.results import load_evaluations, merge_results

from .conftest import blob_task, tiny_config


def test_sweep_settings_order_and_errors():
    cfg = tiny_config("finetune.label_fractions=[1.0,0.25]", "finetune.modes=[finetune,linear_probe]")
    assert protocol.sweep_settings(cfg) == [("finetune", 0.25), ("finetune", 1.0),
                                            ("linear_probe", 0.25), ("linear_probe", 1.0)]
    assert protocol.sweep_settings(tiny_config("finetune.label_fraction=0.5")) == [("finetune", 0.5)]
    with pytest.raises(ConfigError, match="unknown mode 'probe'"):
        protocol.sweep_settings(tiny_config("finetune.modes=[probe]"))
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\], got 1.5"):
        protocol.sweep_settings(tiny_config("finetune.label_fractions=[0.5,1.5]"))
    with pytest.raises(ConfigError, match="repeats"):
        protocol.sweep_settings(tiny_config("finetune.label_fractions=[0.5,0.5]"))
    assert protocol.mode_changes("linear_probe", "classification") == {"finetune.freeze_encoder": True,
                                                                       "finetune.head": "linear"}
    assert protocol.mode_changes("linear_probe", "segmentation") == {"finetune.freeze_encoder": True}
    assert protocol.mode_changes("finetune", "segmentation") == {}


def test_linear_probe_trains_only_the_head_and_keeps_the_pretrained_encoder(tmp_path):
    data = blob_task("classification", n=36, patients=5)
    torch.manual_seed(3)
    # norm=batch: running statistics are used at test time, so a frozen encoder must keep them too
    # (the default batch_stats norm always normalises by the batch, as the official ContBatchNorm3d)
    weights = save_weights(UNet3D(width=0.125, norm="batch"), tmp_path / "mg.safetensors", {"method": "models_genesis"})
    cfg = tiny_config("train.epochs=2", "finetune.task=ncc",
                      *[f"{k}={v}" for k, v in protocol.mode_changes("linear_probe", "classification").items()])
    split = split_by_patient(data, cfg.finetune.split, 0)
    setup, _ = trainer._setup(_task("ncc"),
                              data, split, cfg, InitSpec("mg", weights), seed=0)
    head = [n for n, p in setup.model.named_parameters() if p.requires_grad]
    assert head and all(n.startswith("head") for n in head)
    assert [type(m).__name__ for m in setup.model.head.modules() if isinstance(m, torch.nn.Linear)] == ["Linear"]
    before = {k: v.clone() for k, v in setup.model.state_dict().items() if not k.startswith("head")}
    result = trainer.run_finetune(_task("ncc"), data, split, cfg, InitSpec("mg", weights), tmp_path / "run", 0)
    from semantic_genesis.models.weights import load_weights

    after, _ = load_weights(tmp_path / "run" / "weights" / "best.safetensors")
    for key, value in before.items():  # the encoder (and its normalisation statistics) never moved
        assert torch.equal(after[key], value), key
    assert result.status == "ok"


def test_segmentation_linear_probe_trains_the_decoder_on_a_frozen_encoder(tmp_path):
    from semantic_genesis.finetune.models import encoder_parameters

    data = blob_task("segmentation", n=24, patients=6)
    weights = save_weights(UNet3D(width=0.125), tmp_path / "mg.safetensors", {"method": "models_genesis"})
    cfg = tiny_config("finetune.task=ncs", *[f"{k}={v}" for k, v in protocol.mode_changes("linear_probe", "segmentation").items()])
    split = split_by_patient(data, cfg.finetune.split, 0)
    setup, report = trainer._setup(_task("ncs"), data, split, cfg, InitSpec("mg", weights), seed=0)
    encoder = {id(p) for p in encoder_parameters(setup.model)}
    trainable = [n for n, p in setup.model.named_parameters() if p.requires_grad]
    assert encoder and not any(p.requires_grad for p in encoder_parameters(setup.model))
    assert trainable and all(n.startswith(("up_tr", "out_tr")) for n in trainable)
    assert len(trainable) + len(encoder) == len(list(setup.model.parameters()))
    assert setup.frozen_modules and "down_tr64.ops.0.conv1.weight" in report.loaded


def _task(name):
    from semantic_genesis.finetune import tasks

    return tasks.get(name)


def test_sweep_runs_every_setting_resumes_and_reports_per_fraction(tmp_path, monkeypatch):
    data = blob_task("classification", n=48, patients=10)
    cfg = tiny_config("train.epochs=1", "finetune.task=ncc", "finetune.label_fractions=[0.5,1.0]",
                      "finetune.modes=[finetune,linear_probe]")
    weights = save_weights(UNet3D(width=0.125), tmp_path / "mg.safetensors", {"method": "models_genesis"})
    inits = [InitSpec("scratch"), InitSpec("mg", weights)]
    out = tmp_path / "sweep"
    calls = []
    real = trainer.run_finetune

    def counted(*args, **kwargs):
        calls.append((args[3].finetune.label_fraction, args[3].finetune.freeze_encoder, args[4].name))
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_finetune", counted)
    summaries = protocol.run_sweep(cfg, None, inits, 2, out, log=lambda s: None, data=data)
    assert len(calls) == 4 * 2 * 2 and len(summaries) == 4
    assert {(f, frozen) for f, frozen, _ in calls} == {(0.5, False), (1.0, False), (0.5, True), (1.0, True)}
    index = json.loads((out / protocol.SWEEP_FILE).read_text())
    assert [s["folder"] for s in index["settings"]] == ["finetune/fraction_0.5", "finetune/fraction_1",
                                                        "linear_probe/fraction_0.5", "linear_probe/fraction_1"]
    # nested and shared: the half-label training set is a subset of the full one, the test set is the same
    half = json.loads((out / "finetune" / "fraction_0.5" / "split.json").read_text())
    full = json.loads((out / "finetune" / "fraction_1" / "split.json").read_text())
    assert set(half["train"]) < set(full["train"]) and half["test"] == full["test"] and half["val"] == full["val"]
    summary = json.loads((out / "linear_probe" / "fraction_0.5" / "results.json").read_text())
    assert summary["mode"] == "linear_probe" and summary["label_fraction"] == 0.5
    test = summary["data"]["test"]
    assert test["samples"] == len(full["test"]) and test["positives"] == sum(data.positive(i) for i in full["test"])
    assert test["patients"] == len({data.patients[i] for i in full["test"]})
    calls.clear()
    protocol.run_sweep(cfg, None, inits, 2, out, log=lambda s: None, data=data)
    assert calls == []  # resumed: every trial of every setting was finished

    assert len(load_evaluations(out)) == 4
    md = merge_results([out], tmp_path / "report").read_text()
    assert "## Label fraction 1 (100% of the training patients)" in md
    assert "## Label fraction 0.5 (50% of the training patients)" in md
    assert md.index("Label fraction 1 ") < md.index("Label fraction 0.5")
    assert "NCC AUC%" in md and "NCC linear probe AUC%" in md
    assert md.count("Test set (the same for every initialisation and trial)") == 4
    assert "Student's independent two-sample t-test" in md
    assert (tmp_path / "report" / "label_efficiency.png").read_bytes()[:4] == b"\x89PNG"
    rows = (tmp_path / "report" / "results.csv").read_text().splitlines()
    assert rows[0].startswith("label_fraction,initialisation") and len(rows) == 1 + 2 * 2


def test_curve_points_are_per_task_mode_and_sorted_by_fraction():
    from semantic_genesis.report.label_efficiency import curve_points

    def summary(fraction, mode, values):
        return {"task": "ncc", "mode": mode, "label_fraction": fraction, "metric": "auc",
                "inits": {"scratch": {"values": values}}}

    points = curve_points([summary(1.0, "finetune", [0.8, 0.9]), summary(0.1, "finetune", [0.6, None]),
                           summary(0.1, "linear_probe", [0.55])])
    assert points[("ncc", "finetune")]["scratch"] == [(0.1, [0.6]), (1.0, [0.8, 0.9])]
    assert points[("ncc", "linear_probe")]["scratch"] == [(0.1, [0.55])]


def test_welch_is_used_when_asked_and_the_test_set_is_under_every_table(tmp_path):
    from scipy import stats as sps

    from semantic_genesis.finetune.results import TrialRecord, write_results

    values = {"a": [0.90, 0.91, 0.92, 0.93], "b": [0.70, 0.95, 0.60, 0.99]}  # unequal variances
    records = [TrialRecord(n, k, k, "ok", {"auc": v}, 3, 2, 1.0) for n, vals in values.items() for k, v in enumerate(vals)]
    info = {"source": "x", "test": {"patients": 7, "samples": 40, "positives": 9}}
    p = {}
    for test, equal_var in (("student", True), ("welch", False)):
        summary = write_results(tmp_path / test, _task("ncc"), "auc", ["a", "b"], records, data_info=info, trials=4,
                                equal_var=equal_var, setting={"mode": "finetune", "label_fraction": 0.25})
        p[test] = summary["inits"]["b"]["p_value"]
        assert p[test] == pytest.approx(sps.ttest_ind(values["a"], values["b"], equal_var=equal_var).pvalue)
        md = (tmp_path / test / "results.md").read_text()
        assert "Test set (the same for every initialisation and trial): 7 patients, 40 samples, 9 positive" in md
        assert "25% of the training patients" in md
        tex = (tmp_path / test / "results.tex").read_text()
        assert ("Welch's" if test == "welch" else "Student's") in tex and "7 patients, 40 samples" in tex
    assert p["student"] != pytest.approx(p["welch"])
    assert "Welch" in json.loads((tmp_path / "welch" / "results.json").read_text())["test"]


def test_protocol_uses_the_configured_ttest(tmp_path):
    data = blob_task("classification", n=36, patients=5)
    cfg = tiny_config("train.epochs=1", "finetune.task=ncc", "finetune.ttest=welch")
    summary = protocol.run_protocol(cfg, None, [InitSpec("a")], 1, tmp_path / "w", log=lambda s: None, data=data)
    assert "Welch" in summary["test"] and summary["mode"] == "finetune" and summary["label_fraction"] == 1.0


def test_cli_evaluate_label_fractions_and_modes(phantom_root, tmp_path, capsys):
    common = ["--config", "finetune_tiny", "finetune.crop_size=[16,16,8]", "model.width=0.125",
              "train.epochs=1", "train.device=cpu", "finetune.max_negatives=6"]
    out = tmp_path / "ncc"
    argv = ["evaluate", "--task", "ncc", "--data", str(phantom_root / "luna16"), "--inits", "scratch", "--trials", "2",
            "--label-fractions", "0.5,1", "--mode", "finetune,linear_probe", "--out", str(out), "-q", *common]
    assert main([*argv, "--dry-run"]) == 0
    assert "4 setting(s)" in capsys.readouterr().out and not out.exists()
    import semantic_genesis.finetune.trainer as trainer_module

    real, calls = trainer_module.run_finetune, []

    def interrupted_in_the_second_setting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    trainer_module.run_finetune = interrupted_in_the_second_setting
    try:
        assert main(argv) == 130
    finally:
        trainer_module.run_finetune = real
    partial = (out / "results.md").read_text()  # the first setting's table, written before the interruption
    assert "finetune/fraction_0.5" in partial and "fraction_1" not in partial and "| scratch |" in partial
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "## Label fraction 0.5" in printed and "## Label fraction 1 " in printed and "label_efficiency.png" in printed
    assert (out / "label_efficiency.png").is_file() and (out / "linear_probe" / "fraction_0.5" / "results.json").is_file()
    assert main(["evaluate", "--task", "ncc", "--data", str(phantom_root / "luna16"), "--label-fractions", "0.5,x",
                 "--out", str(tmp_path / "bad"), *common]) == 2
    assert "--label-fractions 0.5,x: expected comma-separated numbers" in capsys.readouterr().err


def test_equal_steps_scales_epochs_by_the_share_of_training_samples(tmp_path):
    cfg = tiny_config("train.epochs=4", "train.patience=2", "finetune.equal_steps=true")
    scaled = protocol.equal_steps_config(cfg, full_train=30, kept_train=10)
    assert (scaled.train.epochs, scaled.train.patience) == (12, 6)
    assert protocol.equal_steps_config(cfg, 30, 30) is cfg
    off = tiny_config("train.epochs=4")
    assert protocol.equal_steps_config(off, 30, 10) is off

    data = blob_task("classification", n=48, patients=10)
    run = tiny_config("train.epochs=2", "train.patience=2", "finetune.task=ncc", "finetune.label_fraction=0.5",
                      "finetune.equal_steps=true")
    summary = protocol.run_protocol(run, None, [InitSpec("scratch")], 1, tmp_path / "e", log=lambda s: None, data=data)
    full = len(split_by_patient(data, run.finetune.split, 0)["train"])
    kept = summary["data"]["split"]["train"]
    expected = round(2 * full / kept)
    assert kept < full and expected > 2
    assert summary["data"]["epochs"] == expected
    assert json.loads(next((tmp_path / "e" / "trials").rglob("result.json")).read_text())["epochs"] == expected
