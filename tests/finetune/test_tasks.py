import json

import numpy as np
import pytest

from semantic_genesis.errors import ConfigError, DataError, DatasetLayoutError
from semantic_genesis.finetune import tasks

from .conftest import tiny_config


def test_registry():
    assert tasks.available() == ["bms", "dxc", "lcs", "ncc", "ncc2d", "ncs", "ncs2d", "pxs"]
    assert tasks.get("ncc").kind == "classification" and tasks.get("ncc").metric == "auc"
    assert not tasks.get("ncc").multilabel
    dxc = tasks.get("dxc")
    assert dxc.multilabel and dxc.num_outputs == 14 and dxc.spatial_dims == 2 and dxc.metric == "auc"
    assert tasks.get("lcs").metrics == ("iou", "dice")
    pxs = tasks.get("pxs")
    assert pxs.kind == "segmentation" and pxs.spatial_dims == 2 and pxs.metrics == ("iou", "dice", "iou/per_image", "dice/per_image")
    for name, base, kind in (("ncc2d", "ncc", "classification"), ("ncs2d", "ncs", "segmentation")):
        slice_task = tasks.get(name)
        assert (slice_task.slices_of, slice_task.spatial_dims, slice_task.kind) == (base, 2, kind)
        assert slice_task.metrics == tasks.get(base).metrics and tasks.get(base).slices_of == ""
    with pytest.raises(ConfigError, match="available: bms, dxc, lcs, ncc, ncc2d, ncs, ncs2d, pxs"):
        tasks.get("xyz")


def test_ncc_reads_luna16_candidates(phantom_root):
    cfg = tiny_config("finetune.max_negatives=5")
    data = tasks.get("ncc").load(phantom_root / "luna16", cfg)
    labels = np.asarray(data.targets)
    assert data.images.shape[1:] == (1, 16, 16, 8) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert len(set(data.patients)) == 6
    per_scan = {p: int((labels[[i for i, q in enumerate(data.patients) if q == p]] == 0).sum()) for p in set(data.patients)}
    assert max(per_scan.values()) <= 5  # negatives capped per scan
    csv = (phantom_root / "luna16" / "candidates.csv").read_text().splitlines()[1:]
    assert labels.sum() == sum(1 for row in csv if row.endswith(",1"))  # every nodule candidate kept
    # Nodule crops are centred on a nodule: the centre voxel is denser than aerated lung (< -700 HU,
    # i.e. < 0.15); at this coarse phantom grid small nodules are partial-volumed, so no higher bound.
    assert (data.images[labels == 1][:, 0, 8, 8, 4] > 0.15).all()


def test_ncs_native_masks_centred(phantom_root):
    data = tasks.get("ncs").load(phantom_root / "native", tiny_config())
    masks = data.targets
    assert masks.shape == data.images.shape and masks.dtype == np.uint8
    assert masks.sum(axis=(1, 2, 3, 4)).min() > 0
    assert masks[:, 0, 7:10, 7:10, 3:6].any(axis=(1, 2, 3)).all()  # a nodule at every crop centre


def test_lcs_reads_lits_volumes(phantom_root):
    data = tasks.get("lcs").load(phantom_root / "lits", tiny_config())
    assert data.whole_volume and len(data.images) == 6
    assert data.images[0].shape == (1, 64, 64, 48) and data.targets[0].shape == (1, 64, 64, 48)
    assert all(m.any() for m in data.targets)


def test_ncs_npy_layout(tmp_path):
    rng = np.random.default_rng(0)
    for tag, n in (("train", 5), ("valid", 2), ("test", 3)):
        x = rng.uniform(-1000, 400, (n, 24, 24, 8, 1)).astype(np.float32)  # HU, channels-last
        m = np.zeros_like(x)
        m[:, 10:14, 10:14, 3:5] = 1
        np.save(tmp_path / f"x_{tag}_24x24x8.npy", x)
        np.save(tmp_path / f"m_{tag}_24x24x8.npy", m)
    data = tasks.get("ncs").load(tmp_path, tiny_config())
    assert data.images.shape == (10, 1, 16, 16, 8) and 0 <= data.images.min() and data.images.max() <= 1
    assert [len(data.fixed_split[k]) for k in ("train", "val", "test")] == [5, 2, 3]
    assert data.targets[:, 0, 6:10, 6:10, 3:5].all() and data.targets.sum() == 10 * 4 * 4 * 2
    assert data.info["anonymous"]  # crops without patient ids: pretraining leakage cannot be checked


@pytest.mark.parametrize("task,expected", [("ncc", "subset0"), ("ncs", "no NCS data"), ("lcs", "volume-"), ("bms", "flair")])
def test_missing_files_clear_errors(tmp_path, task, expected):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=expected):
        tasks.get(task).load(tmp_path / "empty", tiny_config())
    with pytest.raises(DatasetLayoutError, match="not found"):
        tasks.get(task).load(tmp_path / "missing", tiny_config())


def test_ncs_on_luna16_explains(phantom_root):
    with pytest.raises(DatasetLayoutError, match="no masks"):
        tasks.get("ncs").load(phantom_root / "luna16", tiny_config())


def test_ncs_missing_label_name(phantom_root, tmp_path):
    with pytest.raises(DataError, match="no label 'tumour'"):
        tasks.get("ncs").load(phantom_root / "native", tiny_config("finetune.options={label: tumour}"))


def _luna_small(root, inside, outside_rows):
    """One 10x10x5 CT in the LUNA16 layout with ``inside`` candidates (label, voxel) and rows outside it."""
    from semantic_genesis.io.volumes import Volume, write_volume

    uid = "1.2.3.4"
    hu = np.full((10, 10, 5), -800.0)
    write_volume(Volume(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), metadata={"modality": "ct"}),
                 root / "subset0" / f"{uid}.mhd", dtype="int16")
    rows = [f"{uid},{x},{y},{2.0 * z},{label}" for label, (x, y, z) in inside]
    rows += [f"{uid},{30.0 + k},{-20.0 - k},{50.0},{k % 2}" for k in range(outside_rows)]
    (root / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ,class\n" + "\n".join(rows) + "\n")
    (root / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    return uid


def test_ncc_drops_candidates_outside_their_scan_with_a_warning(tmp_path):
    _luna_small(tmp_path, [(1, (5, 5, 2)), (0, (1, 2, 1)), (0, (8, 8, 4))], outside_rows=27)
    with pytest.warns(UserWarning, match=r"subset0/1\.2\.3\.4\.mhd: 27 of 30 points of candidates\.csv lie outside the scan "
                                         r"\(shape \(10, 10, 5\)"):
        data = tasks.get("ncc").load(tmp_path, tiny_config())
    assert len(data) == 3 and list(data.targets) == [1, 0, 0]  # not 30 samples, 27 of them all padding
    assert data.info["candidates_listed"] == 30 and data.info["candidates_outside"] == 27
    assert all(crop.max() > 0 for crop in data.images)  # every crop holds scan voxels


def test_ncc_refuses_when_every_candidate_is_outside(tmp_path, capfd):
    from semantic_genesis.cli import main

    _luna_small(tmp_path / "luna", [], outside_rows=27)
    with pytest.warns(UserWarning, match="27 of 27 points"), pytest.raises(DataError, match=r"candidates\.csv: all 27 "
                                                                           r"candidates of the scans under .* lie outside their scan"):
        tasks.get("ncc").load(tmp_path / "luna", tiny_config())
    with pytest.warns(UserWarning, match="27 of 27 points"):
        code = main(["finetune", "--task", "ncc", "--data", str(tmp_path / "luna"), "--out", str(tmp_path / "run"),
                     "model.width=0.125", "finetune.crop_size=[16,16,8]", "train.device=cpu"])
    err = capfd.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "lie outside their scan; the coordinates must be world mm" in err
