"""DXC (ChestX-ray14, 14 labels): official split by patient, per-label AUC with n/a labels, the CLI end to
end on a phantom ChestX-ray14 export (from scratch and from a 2D weights file), results tables."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.finetune import tasks
from semantic_genesis.metrics import per_label_auc
from semantic_genesis.io.datasets.chestxray14 import CHESTXRAY14_LABELS

from .conftest import tiny_config

N_PATIENTS = 12


@pytest.fixture(scope="module")
def cxr_root(tmp_path_factory):
    """A phantom ChestX-ray14 export (one image per patient) plus a follow-up image for every
    train_val patient, so that the validation split must keep a patient's images together."""
    from semantic_genesis.phantoms.export import export_xray_cohort

    root = tmp_path_factory.mktemp("dxc") / "cxr"
    export_xray_cohort(root, N_PATIENTS, seed=3, layout="chestxray14", shape=(64, 64, 48), size=(48, 48),
                       finding_rate=0.5)
    csv = (root / "Data_Entry_2017.csv").read_text(encoding="utf-8").splitlines()
    train_val = (root / "train_val_list.txt").read_text(encoding="utf-8").split()
    rows = {line.split(",")[0]: line for line in csv[1:]}
    for name in list(train_val):
        follow = name.replace("_000.png", "_001.png")
        shutil.copy(root / "images" / name, root / "images" / follow)
        csv.append(rows[name].replace(name, follow))
        train_val.append(follow)
    (root / "Data_Entry_2017.csv").write_text("\n".join(csv) + "\n", encoding="utf-8")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n", encoding="utf-8")
    return root


def _config(*overrides):
    return tiny_config("model.name=resunet2d", "model.norm=batch", "finetune.image_size=[32,32]",
                       "finetune.options={val_fraction: 0.25}", "train.batch_size=4", *overrides)


def test_per_label_auc_perfect_scorer_and_labels_without_positives():
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 14)) < 0.4).astype(np.float32)
    labels[:, 13] = 0  # Hernia: no positive
    labels[:, 12] = 1  # Pleural_Thickening: no negative
    scores = torch.as_tensor(labels * 2.0 - 1.0)
    result = per_label_auc(scores, torch.as_tensor(labels), CHESTXRAY14_LABELS)
    assert math.isnan(result["auc/Hernia"]) and math.isnan(result["auc/Pleural_Thickening"])
    assert all(result[f"auc/{n}"] == 1.0 for n in CHESTXRAY14_LABELS[:12])
    assert result["auc"] == 1.0  # the two undefined labels are not averaged in as 0.5
    scores[:, 0] = -scores[:, 0]  # one label scored backwards: AUC 0, mean (11 + 0) / 12
    result = per_label_auc(scores, torch.as_tensor(labels), CHESTXRAY14_LABELS)
    assert result["auc/Atelectasis"] == 0.0 and result["auc"] == pytest.approx(11 / 12)
    with pytest.raises(DataError, match="none of the 14 labels has both positives and negatives"):
        per_label_auc(torch.zeros(5, 14), torch.zeros(5, 14), CHESTXRAY14_LABELS)


def test_official_split_is_patient_disjoint(cxr_root):
    data = tasks.get("dxc").load(cxr_root, _config("finetune.split=official"))
    split = data.fixed_split
    people = {k: {data.patients[i] for i in v} for k, v in split.items()}
    assert all(len(v) for v in people.values())
    assert len(split["train"]) + len(split["val"]) == 2 * (len(people["train"]) + len(people["val"]))  # follow-ups kept with their patient
    assert not (people["train"] & people["val"]) and not (people["train"] & people["test"]) and not (people["val"] & people["test"])
    assert sum(len(v) for v in split.values()) == len(data)
    # patients named as the 2D patch sets name them (ChestX-ray14 patient of 00000003_001.png: 00000003)
    assert all(data.patients[i] == data.images.paths[i].name[:8] for i in range(len(data)))
    test_list = (cxr_root / "test_list.txt").read_text(encoding="utf-8").split()
    assert sorted(data.images.paths[i].name for i in split["test"]) == sorted(test_list)
    # images: (1, 32, 32) float32 in [0, 1]; targets: the 14 labels of the CSV
    image = data.images[0]
    assert image.shape == (1, 32, 32) and image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    assert data.targets.shape == (len(data), 14) and set(np.unique(data.targets)) <= {0.0, 1.0}


def test_random_split_uses_every_image(cxr_root):
    from semantic_genesis.finetune.data import split_by_patient

    data = tasks.get("dxc").load(cxr_root, _config("finetune.split=random"))
    assert data.fixed_split is None and len(data) == len(list((cxr_root / "images").glob("*.png")))
    split = split_by_patient(data, "random", seed=0)
    people = [{data.patients[i] for i in split[k]} for k in ("train", "val", "test")]
    assert not (people[0] & people[1]) and not (people[0] & people[2]) and not (people[1] & people[2])


def _finetune(cxr_root, out, *extra):
    from semantic_genesis.cli import main

    code = main(["finetune", "--config", "finetune_dxc_tiny", "--data", str(cxr_root), "--out", str(out),
                 "finetune.image_size=[32,32]", "finetune.options={val_fraction: 0.25}", "train.epochs=1",
                 "train.batch_size=4", "train.device=cpu", "train.num_workers=0", *extra])
    assert code == 0
    return json.loads((out / "result.json").read_text(encoding="utf-8"))


def test_finetune_dxc_end_to_end_from_scratch_and_from_2d_weights(cxr_root, tmp_path, capsys):
    from semantic_genesis.models.resunet2d import ResUNet2D
    from semantic_genesis.models.weights import save_weights

    result = _finetune(cxr_root, tmp_path / "scratch")
    assert result["status"] == "ok" and result["metric"] == "auc"
    per_label = {n: result["test"][f"auc/{n}"] for n in CHESTXRAY14_LABELS}
    defined = [v for v in per_label.values() if not math.isnan(v)]
    assert defined and result["test"]["auc"] == pytest.approx(sum(defined) / len(defined))
    out = capsys.readouterr().out
    if len(defined) < 14:
        assert "n/a (no positive or no negative in the test split" in out

    weights = save_weights(ResUNet2D(in_channels=1, width=0.125, norm="batch"), tmp_path / "mg2d.safetensors",
                           {"method": "models_genesis"})
    result = _finetune(cxr_root, tmp_path / "mg2d", "--init", f"mg2d={weights}")
    assert result["status"] == "ok" and result["init"]["loaded"] > 0 and result["init"]["method"] == "models_genesis"
    assert 0.0 <= result["test"]["auc"] <= 1.0


def test_image_size_must_fit_the_backbone(cxr_root, tmp_path):
    from semantic_genesis.finetune.data import split_by_patient
    from semantic_genesis.finetune.models import InitSpec
    from semantic_genesis.finetune.trainer import run_finetune

    cfg = _config("finetune.image_size=[40,40]", "train.epochs=1")
    task = tasks.get("dxc")
    data = task.load(cxr_root, cfg)
    with pytest.raises(ConfigError, match=r"finetune.image_size \[40, 40\]: every size must be a multiple of 32"):
        run_finetune(task, data, split_by_patient(data, seed=0), cfg, InitSpec("scratch"), tmp_path / "run", 0)


def test_unknown_label_in_the_csv_is_a_one_line_error(cxr_root, tmp_path, capfd):
    from semantic_genesis.cli import main

    root = tmp_path / "cxr"
    shutil.copytree(cxr_root, root)
    csv = root / "Data_Entry_2017.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    first = lines[1].split(",")
    first[1] = "Effusion|Flu"
    lines[1] = ",".join(first)
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(["finetune", "--config", "finetune_dxc_tiny", "--data", str(root), "--out", str(tmp_path / "run"),
                 "train.device=cpu"])
    err = capfd.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Data_Entry_2017.csv" in err and "unknown finding 'Flu'" in err


def test_results_tables_report_per_label_auc_and_na(tmp_path):
    from semantic_genesis.finetune.results import TrialRecord, write_results

    task = tasks.get("dxc")
    records = []
    for init, base in (("scratch", 0.6), ("sg2d", 0.8)):
        for k in range(3):
            metrics = {f"auc/{n}": base + 0.01 * k + 0.001 * j for j, n in enumerate(CHESTXRAY14_LABELS)}
            metrics["auc/Hernia"] = math.nan  # no positive in the test split
            metrics["auc"] = float(np.mean([v for v in metrics.values() if not math.isnan(v)]))
            records.append(TrialRecord(init, k, k, "ok", metrics, 3, 2, 1.0))
    summary = write_results(tmp_path, task, "auc", ["scratch", "sg2d"], records, trials=3)
    assert summary["best"] == "sg2d" and summary["labels"] == list(CHESTXRAY14_LABELS)
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    hernia = saved["inits"]["sg2d"]["per_label"]["Hernia"]
    assert hernia["n"] == 0 and hernia["mean"] is None and hernia["na_trials"] == 3
    assert saved["inits"]["sg2d"]["per_label"]["Atelectasis"]["mean"] == pytest.approx(0.81)
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "## DXC (multi-label classification of 14 labels, mean AUC)" in md
    assert "| label | sg2d | scratch |" in md and "| Hernia | n/a | n/a |" in md
    assert "| Atelectasis | 81.00 ± 1.00 | 61.00 ± 1.00 |" in md and "(n/a here: Hernia)" in md
    header = (tmp_path / "results.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",")[5:7] == ["auc", "auc/Atelectasis"] and "auc/Hernia" in header


def test_pos_weight_auto_is_per_label_and_balanced_sampling_is_refused(cxr_root):
    from semantic_genesis.finetune.data import FinetuneBatches
    from semantic_genesis.finetune.losses import build_loss
    from semantic_genesis.finetune.trainer import _pos_weight

    data = tasks.get("dxc").load(cxr_root, _config("finetune.split=official"))
    train = data.fixed_split["train"]
    weights = _pos_weight(_config("finetune.pos_weight=auto"), data, train)
    labels = data.targets[train]
    for k, w in enumerate(weights):
        pos = labels[:, k].sum()
        assert w == pytest.approx((len(train) - pos) / pos if pos else 1.0)
    logits, target = torch.zeros(4, 14), torch.ones(4, 14)
    weighted = build_loss("auto", "classification", weights)(logits, target)
    assert weighted.item() == pytest.approx(math.log(2) * float(np.mean(weights)), rel=1e-5)
    with pytest.raises(ConfigError, match="balanced_sampling: task dxc is multi-label"):
        FinetuneBatches(data, train, 4, 0, balanced=True)
