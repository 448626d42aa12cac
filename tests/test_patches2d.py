"""2D patch sets (``cubes.cube_size: [H, W]``): radiographs and axial CT slices through the cube-set
machinery (content tests, patient splits, shards, resume), and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semantic_genesis.config import load_config
from semantic_genesis.cubes import generate_cubes, patch_mode, sample_cubes
from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.io.datasets import list_scans
from semantic_genesis.io.images2d import Image2D, read_image2d, write_image2d
from semantic_genesis.io.shards import ShardedArray
from semantic_genesis.io.volumes import read_volume
from semantic_genesis.preprocess import to_unit

PATCH = ["cubes.cube_size=[32,32]", "cubes.cubes_per_scan=6", "cubes.border_fraction=[0.05,0.05,0.05]"]


@pytest.fixture(scope="module")
def radiographs(tmp_path_factory):
    from semantic_genesis.phantoms.cohort import write_native_xray_cohort

    root = tmp_path_factory.mktemp("xray") / "xr"
    write_native_xray_cohort(root, 4, seed=0, ct_shape=(64, 64, 48), size=(96, 96), progress=False)
    return root


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    from semantic_genesis.phantoms.cohort import write_native_ct_cohort

    root = tmp_path_factory.mktemp("ct") / "ct"
    write_native_ct_cohort(root, 3, seed=0, shape=(64, 64, 48), progress=False)
    return root


def _read(root):
    store = ShardedArray(root)
    return np.stack([store.item(i) for i in range(len(store))]), store.all_records(), store.manifest


def test_cube_size_of_two_values_means_patches():
    assert patch_mode([224, 224]) and not patch_mode([64, 64, 32])
    with pytest.raises(ConfigError, match=r"\[X, Y, Z\] \(cubes\) or \[H, W\]"):
        patch_mode([64])


def test_radiograph_patches_are_crops_of_the_unit_image_split_by_patient(radiographs, tmp_path, capsys):
    cfg = load_config(None, PATCH + ["cubes.content_test=body", "cubes.body_min_fraction=0.9"])
    summary = generate_cubes(cfg, radiographs, tmp_path / "patches", progress=False)
    items, records, manifest = _read(tmp_path / "patches")
    assert manifest["item_shape"] == [1, 32, 32] and items.dtype == np.float32
    assert summary.scans == 4 and sum(summary.counts.values()) == len(items) == 24
    assert items.min() >= 0.0 and items.max() <= 1.0 and items.std() > 0.05
    for item, record in list(zip(items, records))[::5]:
        x, y = record["position"]
        assert record["crop"] == [32, 32] and record["score"] <= 0.1  # >= 90% inside the body
        image = read_image2d(record["scan"])
        unit = to_unit(Image2D(image.array, image.spacing, {"modality": "xray"})).array
        np.testing.assert_allclose(item[0], unit[x : x + 32, y : y + 32], atol=1e-3)  # float16 storage
    splits = manifest["attrs"]["splits"]
    assert sorted(splits) == sorted(p.stem for p in (radiographs / "images").glob("*.png"))
    for shard in manifest["shards"]:
        assert shard["split"] == splits[shard["unit"].split("/")[0]]
    assert set(splits.values()) == {"train", "validation", "test"}
    # resuming: nothing is redone and the set is unchanged
    again = generate_cubes(cfg, radiographs, tmp_path / "patches", progress=False)
    assert again.resumed == 4 and np.array_equal(_read(tmp_path / "patches")[0], items)


def test_ct_patches_are_axial_slices_after_the_hu_window(ct, tmp_path):
    cfg = load_config(None, PATCH + ["cubes.content_test=body", "cubes.body_min_fraction=0.8", "cubes.dtype=uint8"])
    generate_cubes(cfg, ct, tmp_path / "slices", progress=False)
    items, records, manifest = _read(tmp_path / "slices")
    assert items.shape == (18, 1, 32, 32) and manifest["dtype"] == "uint8"
    record = records[7]
    x, y, z = record["position"]
    hu = read_volume(record["scan"]).array
    expected = np.clip((np.clip(hu[x : x + 32, y : y + 32, z], -1000, 1000) + 1000) / 2000, 0, 1)
    np.testing.assert_allclose(items[7, 0], expected, atol=1 / 255 + 1e-6)


def test_the_lung_test_works_on_slices():
    hu = np.full((48, 48, 12), -1000.0, dtype=np.float32)
    hu[3:45, 3:45] = 40.0
    hu[6:24, 6:42] = -850.0  # a dark 'lung' inside the body
    unit = ((hu + 1000) / 2000).astype(np.float32)
    cfg = load_config(None, ["cubes.cube_size=[16,16]", "cubes.cubes_per_scan=10", "cubes.border_fraction=[0,0,0]"]).cubes
    patches, records = sample_cubes(unit, cfg, np.random.default_rng(0))
    assert patches.shape == (10, 1, 16, 16)
    for patch, record in zip(patches, records):
        x, y, z = record["position"]
        assert record["score"] <= 0.15 and 0 <= z < 12
        assert np.mean(patch < 0.3) >= 0.7  # mostly lung


def test_a_folder_of_png_and_dicom_radiographs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mixed"
    (folder / "site_a").mkdir(parents=True)
    for i in range(2):
        image = Image2D(rng.random((80, 72)).astype(np.float32), (0.5, 0.5))
        write_image2d(image, folder / f"png_{i}.png", bits=16)
        write_image2d(image, folder / "site_a" / f"dx_{i}.dcm", bits=16, modality="DX")
    refs = list_scans(folder, images2d=True)
    assert [(r.patient_id, r.modality) for r in refs] == [
        ("png_0", "xray"), ("png_1", "xray"), ("site_a/dx_0", "xray"), ("site_a/dx_1", "xray")]
    cfg = load_config(None, PATCH + ["cubes.content_test=none", "cubes.split=[0.5,0.25,0.25]"])
    summary = generate_cubes(cfg, folder, tmp_path / "patches", progress=False)
    assert summary.scans == 4 and summary.counts == {"train": 12, "validation": 6, "test": 6}


def test_too_small_radiographs_and_3d_files_are_named(radiographs, tmp_path, capsys):
    import pydicom

    folder = tmp_path / "bad"
    folder.mkdir()
    write_image2d(Image2D(np.random.default_rng(1).random((20, 40)).astype(np.float32)), folder / "small.png")
    path = write_image2d(Image2D(np.random.default_rng(2).random((64, 64)).astype(np.float32)), folder / "multi.dcm", bits=16)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2  # two frames: a 3D image where a radiograph is expected
    ds.save_as(path)
    cfg = load_config(None, PATCH)
    with pytest.raises(DataError) as err:
        generate_cubes(cfg, folder, tmp_path / "out", progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "image of 20x40 pixels too small for patches of 32x32" in message
    warnings = capsys.readouterr().err
    assert "small.png" in warnings and "multi.dcm" in warnings and "frame" in warnings


@pytest.mark.parametrize("layout", ["chestxray14", "siim"])
def test_chest_xray_layouts_feed_the_patch_set(tmp_path, layout):
    from semantic_genesis.phantoms.export import export_xray_cohort

    root = tmp_path / layout
    export_xray_cohort(root, 3, layout=layout, seed=0, shape=(64, 64, 48), size=(64, 64), finding_rate=0.0)
    refs = list_scans(root, images2d=True)
    assert len(refs) == 3 and {r.modality for r in refs} == {"xray"}
    cfg = load_config(None, PATCH + ["cubes.content_test=none", "cubes.cubes_per_scan=2"])
    summary = generate_cubes(cfg, root, tmp_path / "patches", progress=False)
    items, records, _ = _read(tmp_path / "patches")
    assert summary.scans == 3 and items.shape == (6, 1, 32, 32)
    assert {r["scan"] for r in records} == {str(r.path) for r in refs}


def test_follow_up_radiographs_of_one_patient_share_a_split(tmp_path):
    root = tmp_path / "cxr14"
    (root / "images").mkdir(parents=True)
    (root / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels,Follow-up #,Patient ID\n")
    rng = np.random.default_rng(3)
    for patient in range(6):
        for follow_up in range(3):
            image = Image2D(rng.random((64, 64)).astype(np.float32))
            write_image2d(image, root / "images" / f"{patient:08d}_{follow_up:03d}.png")
    refs = list_scans(root, images2d=True)
    assert len(refs) == 18 and refs[4].patient_id == "00000001_001" and refs[4].person == "00000001"
    cfg = load_config(None, PATCH + ["cubes.content_test=none", "cubes.cubes_per_scan=1"])
    generate_cubes(cfg, root, tmp_path / "patches", progress=False)
    manifest = ShardedArray(tmp_path / "patches").manifest
    assert sorted(manifest["attrs"]["splits"]) == [f"{p:08d}" for p in range(6)]
    for shard in manifest["shards"]:
        assert shard["split"] == manifest["attrs"]["splits"][shard["unit"][:8]]


def test_chestxray14_patch_sets_keep_the_official_test_patients_out(tmp_path):
    from semantic_genesis.io.datasets.chestxray14 import person_of, read_chestxray14
    from semantic_genesis.phantoms.export import export_xray_cohort

    root = tmp_path / "cxr14"
    export_xray_cohort(root, 10, layout="chestxray14", seed=0, shape=(64, 64, 48), size=(64, 64), finding_rate=0.0)
    cfg = load_config(None, PATCH + ["cubes.content_test=none", "cubes.cubes_per_scan=1"])
    summary = generate_cubes(cfg, root, tmp_path / "patches", progress=False)
    assert summary.split_rule.startswith("ChestX-ray14 official lists")
    splits = ShardedArray(tmp_path / "patches").manifest["attrs"]["splits"]
    test_list = (root / "test_list.txt").read_text().split()
    assert test_list and {p for p, s in splits.items() if s == "test"} == {person_of(n) for n in test_list}
    val = read_chestxray14(root, split="val")
    assert {p for p, s in splits.items() if s == "validation"} == {person_of(Path(p).name) for p in val.paths}
    (root / "test_list.txt").unlink()
    with pytest.raises(ConfigError, match=r"cubes.split=official: .*split lists train_val_list.txt and test_list.txt not found"):
        generate_cubes(load_config(None, PATCH + ["cubes.split=official"]), root, tmp_path / "other", progress=False)


def test_cli_dry_run_and_run_of_a_patch_set(radiographs, tmp_path, capsys):
    from semantic_genesis.cli import main

    args = ["cubes", "--config", "models_genesis_2d_tiny", "--data", str(radiographs), "--out", str(tmp_path / "p"), "-q"]
    assert main([*args, "--dry-run"]) == 0
    assert "would cut up to 16 patches of (64, 64) pixels per scan (body content test), split auto by patient" in capsys.readouterr().out
    assert main(args) == 0
    assert "2D patch set at" in capsys.readouterr().out
    assert ShardedArray(tmp_path / "p").manifest["item_shape"] == [1, 64, 64]
