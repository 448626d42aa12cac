"""ncc2d / ncs2d: the 2D slice-based solutions of NCC / NCS (Semantic Genesis Fig. 3).

Aggregation back to the 3D units, identical test units with the 3D tasks, slice training batches,
tiny end-to-end runs through the CLI (scratch, 2D weights, an imported ResNet-18) and the 3D-vs-2D
table of ``report results``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from semantic_genesis.cli import main
from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.finetune import tasks
from tests.finetune.conftest import blob_task, tiny_config

TINY2D = ["model.name=unet2d", "model.width=0.125", "train.epochs=1", "train.device=cpu", "finetune.max_negatives=6",
          "train.num_workers=0"]


# ------------------------------------------------------------------------------------------------
# aggregation
# ------------------------------------------------------------------------------------------------
def test_mean_aggregation_is_the_mean_slice_probability_and_max_the_largest():
    from semantic_genesis.methods.finetune import aggregate_slice_logits

    logits = torch.tensor([[[2.0], [-1.0], [0.5]], [[-3.0], [-3.0], [4.0]]])  # (2 volumes, 3 slices, 1)
    mean = aggregate_slice_logits(logits, "mean")
    assert mean.shape == (2, 1)
    assert torch.allclose(torch.sigmoid(mean), torch.sigmoid(logits.double()).mean(1).float(), atol=1e-6)
    assert torch.equal(aggregate_slice_logits(logits, "max"), torch.tensor([[2.0], [4.0]]))
    # confident slices: float32 sigmoids round to 1.0, the aggregated logits keep their order
    sure = torch.tensor([[[40.0], [40.0]], [[40.0], [39.0]], [[30.0], [-30.0]]])
    agg = aggregate_slice_logits(sure, "mean")[:, 0]
    assert agg[0] > agg[1] > 30.0 and abs(float(agg[2])) < 1e-6  # mean of p=1 and p=0 is 0.5
    with pytest.raises(DataError, match="slice aggregation 'median'"):
        aggregate_slice_logits(logits, "median")
    with pytest.raises(DataError, match="expected \\(volumes, slices >= 1, outputs\\)"):
        aggregate_slice_logits(logits[:, :0], "mean")


class SliceScorer(torch.nn.Module):
    """A "2D network" whose logit of a slice is 10 x (its mean - 0.5) (classification) or 50 x (pixel - 0.5)."""

    def __init__(self, segmentation: bool):
        super().__init__()
        self.segmentation = segmentation
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        if self.segmentation:
            return 50.0 * (x - 0.5)
        return 10.0 * (x.mean(dim=(2, 3)) - 0.5)


def test_slice_predictions_aggregate_per_candidate_over_the_chosen_slices():
    from semantic_genesis.methods.finetune import SliceInference, predict_slices

    volumes = torch.rand(3, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    model = SliceScorer(segmentation=False)
    spec = SliceInference(slices=(3, 4, 5), aggregate="mean", batch_size=4)
    logits = predict_slices(model, volumes, spec, segmentation=False)
    per_slice = torch.sigmoid(10.0 * (volumes[:, 0].mean(dim=(1, 2)) - 0.5))  # (3 volumes, 8 slices)
    assert torch.allclose(torch.sigmoid(logits[:, 0]), per_slice[:, 3:6].mean(1), atol=1e-6)
    assert model.calls == [(4, 1, 8, 8), (4, 1, 8, 8), (1, 1, 8, 8)]  # 9 slices in forward passes of 4
    top = predict_slices(model, volumes, SliceInference(slices=(3, 4, 5), aggregate="max"), segmentation=False)
    assert torch.allclose(torch.sigmoid(top[:, 0]), per_slice[:, 3:6].max(1).values, atol=1e-6)
    with pytest.raises(DataError, match="slices \\[7, 8\\] do not fit volumes of 8"):
        predict_slices(model, volumes, SliceInference(slices=(7, 8)), segmentation=False)


def test_perfect_slices_stack_into_the_3d_mask_and_score_iou_one():
    from semantic_genesis.finetune.data import TaskSamples
    from semantic_genesis.finetune.trainer import scoring_for
    from semantic_genesis.methods.finetune import score_batches
    from semantic_genesis.training.data import collate

    data = blob_task("segmentation", n=6, size=(16, 16, 8))
    data.images = data.targets.astype(np.float32)  # the slice model below segments each slice perfectly
    task, cfg = tasks.get("ncs2d"), tiny_config("finetune.task=ncs2d", "finetune.options={slices: 3}")
    scoring = scoring_for(task, cfg, whole_volume=False)
    assert scoring.segmentation and scoring.slices.slices == (3, 4, 5)
    model = SliceScorer(segmentation=True)
    samples = TaskSamples(data, np.arange(6))
    volumes = collate([samples[i] for i in range(6)])
    stacked = torch.sigmoid(_predict(model, volumes["image"], scoring))
    # every slice is predicted (not only the 3 training slices) and lands at its own z
    assert stacked.shape == (6, 1, 16, 16, 8)
    assert torch.equal(stacked >= 0.5, volumes["target"] > 0)
    scores = score_batches(model, [volumes], scoring)
    assert scores["iou"] == 1.0 and scores["dice"] == 1.0
    # one slice wrong: the 3D IoU drops by exactly that slice's voxels
    spoiled = data.targets.copy()
    spoiled[:, :, :, :, 4] = 0
    lost = int((data.targets[:, :, :, :, 4] > 0).sum())
    assert lost > 0
    volumes["target"] = torch.from_numpy(spoiled)
    scores = score_batches(model, [volumes], scoring)
    assert scores["iou"] == pytest.approx(int(spoiled.sum()) / int(data.targets.sum()))


def _predict(model, images, scoring):
    from semantic_genesis.methods.finetune import predict

    return predict(model, images, scoring)


# ------------------------------------------------------------------------------------------------
# the same data, split and test units as the 3D tasks
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("three,two,layout,split", [
    ("ncc", "ncc2d", "luna16", "[0.5,0.25,0.25]"), ("ncc", "ncc2d", "luna16", "auto"),
    ("ncs", "ncs2d", "native", "random"),
])
def test_slice_based_tasks_test_the_same_units_as_their_3d_task(phantom_root, three, two, layout, split):
    from semantic_genesis.finetune.protocol import protocol_split, test_set_info

    cfg = tiny_config(f"finetune.split={split}", "finetune.split_seed=3")
    a, b = tasks.get(three).load(phantom_root / layout, cfg), tasks.get(two).load(phantom_root / layout, cfg)
    assert b.task == two and b.split_task == three and "axial" in b.info["slices"]
    sa, sb = protocol_split(cfg, a), protocol_split(cfg, b)
    for name in ("train", "val", "test"):
        assert np.array_equal(sa[name], sb[name])
    assert len(sa["test"]) > 0
    test = sa["test"]
    assert [a.patients[i] for i in test] == [b.patients[i] for i in test]
    assert np.array_equal(a.images[test], b.images[test]) and np.array_equal(a.targets[test], b.targets[test])
    assert test_set_info(a, test)["fingerprint"] == test_set_info(b, test)["fingerprint"]
    # another split seed gives other units, and the fingerprint says so
    other = protocol_split(tiny_config(f"finetune.split={split}", "finetune.split_seed=4"), a)
    assert not np.array_equal(other["test"], test)
    assert test_set_info(a, other["test"])["fingerprint"] != test_set_info(a, test)["fingerprint"]


def test_training_slices_are_the_chosen_slices_of_every_crop_with_their_label():
    from semantic_genesis.finetune.data import AxialSlices, FinetuneBatches

    data = blob_task("classification", n=12, size=(16, 16, 8))
    train = np.array([0, 1, 2, 4, 5, 7])
    dataset = AxialSlices(data, train)
    batches = FinetuneBatches(data, train, batch_size=4, seed=0, slices=(3, 4, 5))
    keys = batches.epoch_keys(0)
    assert sorted(keys) == [(p, z) for p in range(6) for z in (3, 4, 5)] and batches.num_batches == 4
    assert keys != batches.epoch_keys(1) and keys == FinetuneBatches(data, train, 4, 0, slices=(3, 4, 5)).epoch_keys(0)
    sample = dataset[(3, 5)]
    assert torch.equal(sample["image"], torch.from_numpy(data.images[4][..., 5]))
    assert sample["target"] == int(data.targets[4]) and sample["index"] == 3
    seg = blob_task("segmentation", n=4, size=(16, 16, 8))
    piece = AxialSlices(seg, np.arange(4))[(2, 6)]
    assert piece["image"].shape == (1, 16, 16) and torch.equal(piece["target"], torch.from_numpy(seg.targets[2][..., 6]))
    # balanced sampling draws slices with their candidate's class weight: both classes about half
    balanced = FinetuneBatches(data, np.arange(12), batch_size=4, seed=0, balanced=True, slices=(3, 4, 5))
    drawn = [int(data.targets[p]) for p, _ in balanced.epoch_keys(0)]
    assert len(drawn) == 36 and 0.25 < np.mean(drawn) < 0.75


def test_slice_options_are_checked_with_one_line_errors():
    from semantic_genesis.finetune.tasks.slices import central_slices, parse_slices

    assert central_slices(8, 3) == (3, 4, 5) and central_slices(8, 1) == (4,) and central_slices(8, 8) == tuple(range(8))
    assert central_slices(32, 2) == (15, 16) and central_slices(7, 7) == tuple(range(7))
    assert all(max(central_slices(d, k)) < d for d in (7, 8, 32) for k in range(1, d + 1))
    assert parse_slices("all", 4) == (0, 1, 2, 3)
    task = tasks.get("ncc2d")
    assert task.spatial_dims == 2 and task.slices_of == "ncc" and task.slice_inference(tiny_config()).slices == (3, 4, 5)
    assert tasks.get("ncs2d").slice_inference(tiny_config()).slices == tuple(range(8))
    for value, message in (("9", "between 1 and the crop depth 8"), ("half", "expected 'all' or a number"),
                           ("2.5", "expected 'all' or a number")):
        with pytest.raises(ConfigError, match=message):
            task.slice_inference(tiny_config(f"finetune.options={{slices: {value}}}"))
    with pytest.raises(ConfigError, match="finetune.options.aggregate: expected one of mean, max, got 'median'"):
        task.slice_inference(tiny_config("finetune.options={aggregate: median}"))


# ------------------------------------------------------------------------------------------------
# through the CLI
# ------------------------------------------------------------------------------------------------
def test_bad_input_is_one_line(phantom_root, tmp_path, capsys):
    base = ["finetune", "--config", "finetune_ncc2d_tiny", "--data", str(phantom_root / "luna16"), "-q"]
    cases = [
        (["--out", str(tmp_path / "a"), *TINY2D, "model.name=unet3d"], "model.name='unet3d' is a 3D network; task ncc2d needs 2D"),
        (["--out", str(tmp_path / "b"), *TINY2D, "finetune.options={slices: 40}"], "finetune.options.slices=40"),
        (["--out", str(tmp_path / "c"), *TINY2D, "model.name=resunet2d"], "finetune.crop_size (its axial slices X, Y) [16, 16]"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    # 3D weights into a slice-based task: the file is named, nothing is trained
    from semantic_genesis.models.unet3d import UNet3D
    from semantic_genesis.models.weights import save_weights

    weights = save_weights(UNet3D(width=0.125), tmp_path / "mg3d.safetensors", {"method": "models_genesis"})
    assert main([*base, "--out", str(tmp_path / "d"), "--init", f"mg={weights}", *TINY2D]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "mg3d.safetensors: holds a 3D network" in errors[0] and "needs a 2D network" in errors[0]


def test_ncs2d_finetunes_from_2d_weights_and_ncc2d_from_an_imported_resnet18(phantom_root, tmp_path, capsys):
    from semantic_genesis.models.unet2d import UNet2D
    from semantic_genesis.models.weights import save_weights
    from tests.models.test_resnet18_import import torchvision_resnet18

    weights = save_weights(UNet2D(in_channels=1, width=0.125, norm="batch"), tmp_path / "mg2d.safetensors",
                           {"method": "models_genesis"})
    out = tmp_path / "ncs2d"
    assert main(["finetune", "--config", "finetune_ncs2d_tiny", "--data", str(phantom_root / "native"), "--out", str(out),
                 "--init", f"mg2d={weights}", "-q", *TINY2D]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["init"]["loaded"] > 0 and result["init"]["random"] == 2  # new output layer
    assert set(result["test"]) == {"iou", "dice"} and 0.0 <= result["test"]["iou"] <= 1.0

    torch.save(torchvision_resnet18(), tmp_path / "resnet18-f37072d3.pth")
    imported = tmp_path / "imagenet.safetensors"
    assert main(["weights", "import", "--format", "torchvision_resnet18", str(tmp_path / "resnet18-f37072d3.pth"),
                 str(imported)]) == 0
    out = tmp_path / "ncc2d"
    assert main(["finetune", "--config", "finetune_ncc2d_tiny", "--data", str(phantom_root / "luna16"), "--out", str(out),
                 "--init", f"imagenet={imported}", "-q", *TINY2D, "finetune.crop_size=[32,32,8]"]) == 0
    capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["init"]["loaded"] == 120  # the whole ResNet-18 encoder (no fc)
    assert 0.0 <= result["test"]["auc"] <= 1.0


def test_evaluate_3d_and_2d_then_report_results_gives_the_fig3_table(phantom_root, tmp_path, capsys):
    luna = str(phantom_root / "luna16")
    common = ["--data", luna, "--inits", "scratch", "--trials", "2", "-q", "train.epochs=1", "train.device=cpu",
              "finetune.max_negatives=6", "model.width=0.125"]
    assert main(["evaluate", "--config", "finetune_tiny", "--task", "ncc", "--out", str(tmp_path / "ncc"), *common]) == 0
    assert main(["evaluate", "--config", "finetune_ncc2d_tiny", "--out", str(tmp_path / "ncc2d"), *common]) == 0
    two = json.loads((tmp_path / "ncc2d" / "results.json").read_text())
    three = json.loads((tmp_path / "ncc" / "results.json").read_text())
    assert (two["task"], two["spatial_dims"], two["slices_of"]) == ("ncc2d", 2, "ncc") and three["spatial_dims"] == 3
    assert two["data"]["test"] == three["data"]["test"]  # patients, samples, positives and fingerprint
    assert "2D slice-based solution of NCC (axial, central 3 of 8 slices" in (tmp_path / "ncc2d" / "results.md").read_text()
    capsys.readouterr()

    assert main(["report", "results", str(tmp_path / "ncc"), str(tmp_path / "ncc2d"), "--out", str(tmp_path / "fig3")]) == 0
    printed = capsys.readouterr().out
    assert "### NCC: 3D volume-based vs 2D slice-based (ncc2d)" in printed and "Not comparable" not in printed
    table = [line for line in printed.splitlines() if line.startswith("| 3D |") or line.startswith("| 2D slices |")]
    assert len(table) == 2 and all("| scratch |" in line for line in table)
    rows = (tmp_path / "fig3" / "dims.csv").read_text().splitlines()
    assert rows[0].startswith("task,label_fraction,mode,dims,initialisation,mean,sd")
    assert sorted(r.split(",")[3] for r in rows[1:]) == ["2D slices", "3D"]
    assert all(r.split(",")[-1] == "yes" for r in rows[1:])
    for r in rows[1:]:  # the means are those of each task's own table
        source = two if r.split(",")[3] == "2D slices" else three
        assert float(r.split(",")[5]) == pytest.approx(100 * source["inits"]["scratch"]["mean"], abs=0.006)

    tex = (tmp_path / "fig3" / "results.tex").read_text()
    best = next(r.split(",") for r in rows[1:] if r.split(",")[9] == "best")
    assert "NCC: 3D volume-based vs 2D slice-based (ncc2d)" in tex
    assert f"{best[3]} & scratch & \\textbf{{{best[5]} $\\pm$ {best[6]}}}" in tex

    # a 2D evaluation on other test units is flagged, not silently compared
    other = json.loads((tmp_path / "ncc2d" / "results.json").read_text())
    other["data"]["test"]["fingerprint"] = "0" * 16
    (tmp_path / "ncc2d" / "results.json").write_text(json.dumps(other))
    assert main(["report", "results", str(tmp_path / "ncc"), str(tmp_path / "ncc2d"), "--out", str(tmp_path / "bad")]) == 0
    assert "**Not comparable**: the test units differ" in capsys.readouterr().out
