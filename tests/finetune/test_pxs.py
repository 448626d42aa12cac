"""PXS (SIIM-ACR pneumothorax segmentation): lazy images and masks resized together, empty masks kept,
a patient-disjoint random split, pooled vs per-image IoU with empty masks, the CLI end to end on a
phantom SIIM-ACR export (from scratch and from a 2D weights file), and a bad RLE as a one-line error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.finetune import tasks

from .conftest import tiny_config

N_PATIENTS = 12


@pytest.fixture(scope="module")
def siim_root(tmp_path_factory):
    from semantic_genesis.phantoms.export import export_xray_cohort

    root = tmp_path_factory.mktemp("pxs") / "siim"
    export_xray_cohort(root, N_PATIENTS, seed=3, layout="siim", shape=(64, 64, 48), size=(48, 48), finding_rate=0.5)
    return root


def _config(*overrides):
    return tiny_config("model.name=resunet2d", "model.norm=batch", "finetune.task=pxs", "finetune.image_size=[32,32]",
                       "train.batch_size=4", *overrides)


def test_load_keeps_empty_masks_and_resizes_masks_with_the_image(siim_root):
    from semantic_genesis.io.datasets.siim_acr import SiimAcrDataset

    data = tasks.get("pxs").load(siim_root, _config())
    reader = SiimAcrDataset(siim_root)
    assert len(data) == len(reader) == N_PATIENTS and data.kind == "segmentation" and not data.whole_volume
    positive = [data.positive(i) for i in range(len(data))]
    assert 0 < sum(positive) < len(data)  # empty (-1) masks are samples too
    assert data.info["pneumothorax"] == sum(positive)
    for i in range(len(data)):
        image, mask = data.images[i], data.targets[i]
        assert image.shape == mask.shape == (1, 32, 32) and image.dtype == np.float32 and mask.dtype == np.uint8
        assert 0.0 <= image.min() and image.max() <= 1.0 and set(np.unique(mask)) <= {0, 1}
        full = reader.load(data.images.pairs.image_ids[i])
        assert bool(mask.any()) == positive[i] == bool(full.mask.any())
        # the mask's foreground share survives the 48 -> 32 resize (bilinear, threshold 0.5)
        assert mask.mean() == pytest.approx(full.mask.mean(), abs=0.03)
    # patients: one image each, the SOP instance UID (as the 2D patch sets of SIIM-ACR name them)
    assert data.patients == sorted(reader.image_ids())


def test_resize_pair_thresholds_the_bilinear_mask():
    from semantic_genesis.finetune.tasks.pxs import resize_pair

    mask = np.zeros((8, 8), dtype=bool)
    mask[:, :4] = True  # left half
    mask[0, 4] = True  # one stray pixel: a quarter of a 2x2 footprint, below 0.5
    image, small = resize_pair(np.full((8, 8), 0.5, np.float32), mask, (4, 4))
    assert image.shape == (1, 4, 4) and np.allclose(image, 0.5)
    assert small[0].tolist() == [[1, 1, 0, 0]] * 4


def test_random_split_is_patient_disjoint_and_official_is_refused(siim_root):
    from semantic_genesis.finetune.data import split_by_patient

    data = tasks.get("pxs").load(siim_root, _config("finetune.split=random"))
    split = split_by_patient(data, "random", seed=0)
    people = [{data.patients[i] for i in split[k]} for k in ("train", "val", "test")]
    assert all(people) and not (people[0] & people[1]) and not (people[0] & people[2]) and not (people[1] & people[2])
    assert sum(len(v) for v in split.values()) == len(data)
    with pytest.raises(ConfigError, match="no official test list"):
        tasks.get("pxs").load(siim_root, _config("finetune.split=official"))


def _cases():
    """Three images of 10 x 10: a large mask found exactly, a small one missed, an empty one left empty."""
    big, small, empty = (torch.zeros(1, 10, 10) for _ in range(3))
    big[0, :5, :] = 1  # 50 pixels
    small[0, 0, :2] = 1  # 2 pixels
    logits = [torch.where(big > 0, 9.0, -9.0), torch.full((1, 10, 10), -9.0), torch.full((1, 10, 10), -9.0)]
    return logits, [big, small, empty]


def test_pooled_and_per_image_iou_differ_and_empty_masks_score_right():
    from semantic_genesis.finetune.trainer import scoring_for

    task = tasks.get("pxs")
    logits, masks = _cases()

    def score(definition, pairs):
        scoring = scoring_for(task, _config(f"finetune.iou={definition}"), whole_volume=False)
        return scoring.reduce([scoring.case(l, m) for l, m in pairs])

    pooled = score("pooled", zip(logits, masks))
    per_image = score("per_case", zip(logits, masks))
    assert pooled["iou"] == pytest.approx(50 / 52) and pooled["dice"] == pytest.approx(100 / 102)
    assert per_image["iou"] == pytest.approx(2 / 3) and per_image["dice"] == pytest.approx(2 / 3)
    # every run also reports the mean per image, whatever finetune.iou says
    assert pooled["iou/per_image"] == per_image["iou/per_image"] == pytest.approx(2 / 3)
    assert pooled["dice/per_image"] == pytest.approx(2 / 3)
    # the empty image adds nothing to the pooled counts, and is a perfect image per case
    without_empty = score("pooled", list(zip(logits, masks))[:2])
    assert (without_empty["iou"], without_empty["dice"]) == (pooled["iou"], pooled["dice"])
    assert without_empty["iou/per_image"] == pytest.approx(1 / 2)
    # one false-positive pixel on the empty image: that image scores 0 per case
    false_positive = logits[2].clone()
    false_positive[0, 9, 9] = 9.0
    spoiled = score("per_case", zip(logits[:2] + [false_positive], masks))
    assert spoiled["iou"] == pytest.approx(1 / 3)
    assert score("pooled", zip(logits[:2] + [false_positive], masks))["iou"] == pytest.approx(50 / 53)


def _finetune(root, out, *extra):
    from semantic_genesis.cli import main

    code = main(["finetune", "--config", "finetune_pxs_tiny", "--task", "pxs", "--data", str(root), "--out", str(out),
                 "finetune.image_size=[32,32]", "train.epochs=1", "train.batch_size=4", "train.device=cpu",
                 "train.num_workers=0", *extra])
    assert code == 0
    return json.loads((out / "result.json").read_text(encoding="utf-8"))


def test_finetune_pxs_end_to_end_from_scratch_and_from_2d_weights(siim_root, tmp_path):
    from semantic_genesis.models.unet2d import UNet2D
    from semantic_genesis.models.weights import save_weights

    result = _finetune(siim_root, tmp_path / "scratch", "finetune.iou=per_case")
    assert result["status"] == "ok" and result["metric"] == "iou"
    metrics = ("iou", "dice", "iou/per_image", "dice/per_image")
    assert set(result["test"]) == set(metrics) and all(0.0 <= result["test"][k] <= 1.0 for k in metrics)
    assert result["test"]["iou"] == result["test"]["iou/per_image"]  # finetune.iou=per_case

    weights = save_weights(UNet2D(in_channels=1, width=0.125, norm="batch"), tmp_path / "mg2d.safetensors",
                           {"method": "models_genesis"})
    result = _finetune(siim_root, tmp_path / "mg2d", "--init", f"mg2d={weights}", "model.name=unet2d",
                       "finetune.metric=iou/per_image")
    assert result["status"] == "ok" and result["init"]["loaded"] > 0 and result["init"]["method"] == "models_genesis"
    assert result["metric"] == "iou/per_image" and 0.0 <= result["test"]["iou/per_image"] <= 1.0


def test_rle_that_overruns_its_image_is_a_one_line_error(siim_root, tmp_path, capfd):
    from semantic_genesis.cli import main

    root = tmp_path / "siim"
    shutil.copytree(siim_root, root)
    csv = root / "train-rle.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].split(",")[0] + ", 2300 10"  # a 48 x 48 image has 2304 pixels
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = tasks.get("pxs").load(root, _config())
    broken = data.images.pairs.image_ids.index(lines[1].split(",")[0])
    with pytest.raises(DataError, match=r"train-rle.csv.*a run ends at pixel 2310 but a 48x48 image has 2304 pixels"):
        data.targets[broken]
    # read in DataLoader worker processes: the worker's traceback is not printed either
    code = main(["finetune", "--config", "finetune_pxs_tiny", "--data", str(root), "--out", str(tmp_path / "run"),
                 "finetune.image_size=[32,32]", "train.epochs=1", "train.batch_size=4", "train.device=cpu",
                 "train.num_workers=2"])
    err = capfd.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "train-rle.csv row 2: run-length encoding overruns the image" in err
    assert "ends at pixel 2310" in err


def test_results_tables_report_pooled_and_per_image_columns(tmp_path):
    from semantic_genesis.finetune.results import TrialRecord, write_results

    task = tasks.get("pxs")
    records = [TrialRecord(init, k, k, "ok", {"iou": base + 0.01 * k, "dice": base + 0.1, "iou/per_image": base - 0.1,
                                              "dice/per_image": base}, 3, 2, 1.0)
               for init, base in (("scratch", 0.5), ("sg2d", 0.6)) for k in range(3)]
    summary = write_results(tmp_path, task, "iou", ["scratch", "sg2d"], records, trials=3)
    assert summary["best"] == "sg2d"
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert saved["inits"]["sg2d"]["iou/per_image"]["mean"] == pytest.approx(0.5)
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "IoU (per image) %" in md and "Dice (per image) %" in md
    header = (tmp_path / "results.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "iou/per_image" in header and "dice/per_image" in header
