"""Cube generation: content test, multi-scale crops, patient split, determinism, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semantic_genesis import cubes as cubes_mod
from semantic_genesis.cli import main
from semantic_genesis.config import load_config
from semantic_genesis.cubes import generate_cubes, sample_cubes, split_patients
from semantic_genesis.errors import DataError
from semantic_genesis.io.shards import ShardedArray
from semantic_genesis.io.volumes import Volume, write_volume
from semantic_genesis.io.shard_dataset import StoreDataset

BASE = ["cubes.cube_size=[16,16,8]", "cubes.cubes_per_scan=6", "cubes.dtype=float16"]


def _chest(shape=(48, 48, 24), seed=0) -> np.ndarray:
    """HU volume: air outside (-1000 HU), a tissue body (+40 HU) 3 voxels in from the X/Y borders,
    and a dark 'lung' (-850 HU) inside it covering X 5..23, Y 5..42, plus noise."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[3 : shape[0] - 3, 3 : shape[1] - 3] = 40.0
    hu[5 : shape[0] // 2, 5 : shape[1] - 5] = -850.0
    return hu + rng.normal(0, 20, shape).astype(np.float32)


def _scans(root: Path, n: int = 5, small: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"p{i:02d}"
        shape = (12, 12, 8) if name in small else (48, 48, 24)
        vol = Volume(_chest(shape, seed=i), spacing=(1.5, 1.5, 2.0), metadata={"modality": "ct"})
        write_volume(vol, root / f"{name}.nii.gz", dtype="int16")
    return root


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    return _scans(tmp_path_factory.mktemp("scans") / "ct")


def _cfg(*extra: str):
    return load_config(None, BASE + list(extra))


def test_lung_test_accepts_only_dark_cubes_inside_the_body():
    unit = (np.clip(_chest(seed=3), -1000, 1000) + 1000) / 2000
    cfg = _cfg("cubes.cubes_per_scan=20", "cubes.border_fraction=[0,0,0]").cubes
    cubes, records = sample_cubes(unit.astype(np.float32), cfg, np.random.default_rng(0))
    assert cubes.shape == (20, 1, 16, 16, 8) and cubes.dtype == np.float32
    assert all(r["score"] <= 0.15 for r in records)
    for cube, r in zip(cubes, records):
        x, y, z = r["position"]
        # the lung (X 5..23, Y 5..42) up to a sliver: at most 15% tissue or outside air
        assert x >= 5 - 2 and x + 16 <= 24 + 2 and y >= 5 - 2 and y + 16 <= 43 + 2
        np.testing.assert_array_equal(cube[0], unit[x : x + 16, y : y + 16, z : z + 8].astype(np.float32))
        assert cube.mean() < 0.2


def test_official_lung_test_also_accepts_the_air_outside_the_body():
    """The official darkness-only test takes outside air for lung; the default test does not."""
    hu = np.full((64, 64, 16), -1000.0, np.float32)
    hu[24:, :, :] = 40.0  # a body filling X >= 24: X < 24 is air outside it, there is no lung
    unit = ((hu + 1000) / 2000).astype(np.float32)
    official = _cfg("cubes.content_test=lung_official", "cubes.cubes_per_scan=10", "cubes.border_fraction=[0,0,0]").cubes
    cubes, records = sample_cubes(unit, official, np.random.default_rng(0))
    assert len(cubes) == 10 and all(r["position"][0] + 16 <= 24 + 2 for r in records)
    aware = _cfg("cubes.cubes_per_scan=10", "cubes.border_fraction=[0,0,0]").cubes
    info: dict = {}
    cubes, _ = sample_cubes(unit, aware, np.random.default_rng(0), diagnostics=info)
    assert len(cubes) == 0 and info["passed"] == 0 and info["trials"] == 500
    assert "lung content test (mostly air inside the body" in info["reason"]


def test_official_border_rule_uses_absolute_voxels():
    unit = np.zeros((300, 300, 100), dtype=np.float32)
    cfg = _cfg("cubes.content_test=none", "cubes.border_rule=official", "cubes.cubes_per_scan=400",
               "cubes.cube_size=[64,64,32]").cubes
    _, records = sample_cubes(unit, cfg, np.random.default_rng(0))
    pos = np.array([r["position"] for r in records])
    # official ranges: x, y in [100, 300 - 64 - 1 - 100] = [100, 135]; z in [30, 100 - 32 - 3 - 1 - 30] = [30, 34]
    assert pos[:, :2].min() == 100 and pos[:, :2].max() == 135
    assert pos[:, 2].min() == 30 and pos[:, 2].max() == 34
    with pytest.raises(DataError, match=r"official borders .* leave no room .* use cubes.border_rule=relative"):
        sample_cubes(np.zeros((128, 128, 96), np.float32), cfg, np.random.default_rng(0))


def test_multiscale_crops_are_resized_to_the_cube():
    unit = np.random.default_rng(0).random((40, 40, 16)).astype(np.float32)
    cfg = _cfg("cubes.content_test=none", "cubes.crop_scales=[0.5,1.0,1.5]", "cubes.cubes_per_scan=60").cubes
    cubes, records = sample_cubes(unit, cfg, np.random.default_rng(1))
    assert cubes.shape == (60, 1, 16, 16, 8)
    assert {tuple(r["crop"]) for r in records} == {(8, 8, 8), (16, 16, 8), (24, 24, 8)}
    assert 0 <= cubes.min() and cubes.max() <= 1
    r = next(r for r in records if r["scale"] == 1.5)
    x, y, z = r["position"]
    assert x + 24 <= 40 and y + 24 <= 40


def test_border_is_relative_to_the_volume():
    unit = np.zeros((100, 100, 40), dtype=np.float32)
    cfg = _cfg("cubes.content_test=none", "cubes.border_fraction=[0.2,0.1,0.0]", "cubes.cubes_per_scan=200").cubes
    _, records = sample_cubes(unit, cfg, np.random.default_rng(2))
    pos = np.array([r["position"] for r in records])
    assert pos[:, 0].min() >= 20 and pos[:, 0].max() <= 100 - 16 - 20
    assert pos[:, 1].min() >= 10 and pos[:, 1].max() <= 100 - 16 - 10
    assert pos[:, 0].max() - pos[:, 0].min() > 40  # spread over the allowed range


def test_patient_split_is_seeded_and_disjoint():
    ids = [f"p{i}" for i in range(20)]
    a = split_patients(ids, (0.7, 0.15, 0.15), seed=0)
    assert a == split_patients(list(reversed(ids)), (0.7, 0.15, 0.15), seed=0)
    assert a != split_patients(ids, (0.7, 0.15, 0.15), seed=1)
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "validation", "test")}
    assert counts == {"train": 14, "validation": 3, "test": 3}
    assert set(split_patients(["a", "b", "c"], (0.7, 0.15, 0.15), 0).values()) == {"train", "validation", "test"}


def _store_contents(root: Path):
    store = ShardedArray(root)
    return np.stack([store.item(i) for i in range(len(store))]), store.all_records(), store.manifest


def test_generation_is_deterministic_per_seed(scans, tmp_path):
    s1 = generate_cubes(_cfg(), scans, tmp_path / "a", progress=False)
    generate_cubes(_cfg(), scans, tmp_path / "b", progress=False)
    generate_cubes(_cfg("seed=1"), scans, tmp_path / "c", progress=False)
    a, ra, ma = _store_contents(tmp_path / "a")
    b, rb, _ = _store_contents(tmp_path / "b")
    c, _, _ = _store_contents(tmp_path / "c")
    assert s1.counts == {"train": 18, "validation": 6, "test": 6} and s1.scans == 5 and ma["complete"]
    np.testing.assert_array_equal(a, b)
    assert ra == rb
    assert a.shape != c.shape or not np.array_equal(a, c)
    # every shard is one patient in one split
    splits = ma["attrs"]["splits"]
    for shard in ma["shards"]:
        assert shard["split"] == splits[shard["unit"].split("/")[0]]
    assert {r["patient"] for r in ra} == {f"p{i:02d}" for i in range(5)}


def test_interrupted_generation_resumes_to_the_same_set(scans, tmp_path, monkeypatch):
    reference = tmp_path / "ref"
    generate_cubes(_cfg(), scans, reference, progress=False)
    original = cubes_mod.sample_cubes
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(cubes_mod, "sample_cubes", dying)
    with pytest.raises(KeyboardInterrupt):
        generate_cubes(_cfg(), scans, tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(manifest["completed_units"]) == 2 and not manifest["complete"]
    monkeypatch.setattr(cubes_mod, "sample_cubes", original)
    summary = generate_cubes(_cfg(), scans, tmp_path / "run", progress=False)
    assert summary.resumed == 2
    a, ra, _ = _store_contents(reference)
    b, rb, _ = _store_contents(tmp_path / "run")
    np.testing.assert_array_equal(a, b)
    assert ra == rb


def test_settings_change_on_resume_is_refused(scans, tmp_path):
    generate_cubes(_cfg(), scans, tmp_path / "a", progress=False)
    with pytest.raises(Exception, match="cubes_per_scan|other settings"):
        generate_cubes(_cfg("cubes.cubes_per_scan=3"), scans, tmp_path / "a", progress=False)


def test_small_scans_are_skipped_and_named(tmp_path, capsys):
    data = _scans(tmp_path / "ct", n=3, small=("p01",))
    summary = generate_cubes(_cfg(), data, tmp_path / "out", progress=False)
    assert list(summary.skipped) == ["p01/p01.nii.gz"]
    assert "(12, 12, 8) is too small for cubes of (16, 16, 8)" in summary.skipped["p01/p01.nii.gz"]
    assert "p01.nii.gz" in capsys.readouterr().err
    assert summary.scans == 2
    only_small = _scans(tmp_path / "small", n=2, small=("p00", "p01"))
    with pytest.raises(DataError, match=r"no scan gave any cube.*p00.*too small"):
        generate_cubes(_cfg(), only_small, tmp_path / "out2", progress=False)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no scans found"):
        generate_cubes(_cfg(), tmp_path / "empty", tmp_path / "out", progress=False)


def test_manifest_that_does_not_match_its_shards(scans, tmp_path):
    out = tmp_path / "set"
    generate_cubes(_cfg(), scans, out, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    shard = manifest["shards"][0]["name"]
    np.save(out / f"{shard}.npy", np.zeros((2, 1, 16, 16, 8), dtype=np.float16))
    dataset = StoreDataset(out, split=manifest["shards"][0]["split"], kind="cubes")
    with pytest.raises(DataError, match=f"{shard}.npy: shard has shape"):
        dataset[0]
    (out / f"{shard}.npy").unlink()
    with pytest.raises(DataError, match="missing"):
        StoreDataset(out, split=None, kind="cubes")


def test_cli_cubes(scans, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["cubes", "--data", str(scans), "--out", str(out), "-q", *BASE]) == 0
    assert "train 18, validation 6, test 6" in capsys.readouterr().out
    assert main(["cubes", "--data", str(tmp_path / "nothing"), "--out", str(out), "-q"]) == 2
    assert "error:" in capsys.readouterr().err


def test_splits_are_assigned_after_unreadable_and_constant_scans_are_dropped(tmp_path, capsys):
    data = _scans(tmp_path / "ct", n=4)
    (data / "p04.nii.gz").write_bytes(b"not a nifti file")
    flat = Volume(np.full((48, 48, 24), -1000.0, np.float32), spacing=(1.5, 1.5, 2.0), metadata={"modality": "ct"})
    write_volume(flat, data / "p05.nii.gz", dtype="int16")
    summary = generate_cubes(_cfg("cubes.border_fraction=[0,0,0]"), data, tmp_path / "out", progress=False)
    assert set(summary.skipped) == {"p04/p04.nii.gz", "p05/p05.nii.gz"}
    assert "every voxel has the value -1000" in summary.skipped["p05/p05.nii.gz"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    good = [f"p{i:02d}" for i in range(4)]
    # the split is drawn over the four usable patients only: every split gets one
    assert manifest["attrs"]["splits"] == split_patients(good, (0.7, 0.15, 0.15), seed=0)
    assert summary.counts["validation"] > 0 and summary.counts["test"] > 0
    assert sorted(sum(manifest["attrs"]["split_patients"].values(), [])) == good
    assert {s["split"] for s in manifest["shards"]} <= {"train", "validation", "test"}
    assert "random by patient" in manifest["attrs"]["split_rule"]


def test_an_empty_split_is_warned_about(tmp_path, capsys):
    data = _scans(tmp_path / "ct", n=2)
    summary = generate_cubes(_cfg("cubes.border_fraction=[0,0,0]"), data, tmp_path / "out", progress=False)
    assert summary.counts["test"] == 0 and summary.counts["validation"] > 0
    assert "warning: the test split of the cube set is empty" in capsys.readouterr().err


@pytest.fixture(scope="module")
def luna16_scans(tmp_path_factory) -> Path:
    """20 small LUNA16-layout phantoms (patient i in subset i % 10)."""
    from semantic_genesis.phantoms.export import export_ct_cohort

    root = tmp_path_factory.mktemp("luna16") / "luna16"
    export_ct_cohort(root, 20, seed=0, layout="luna16", shape=(32, 32, 24))
    return root


def test_luna16_cubes_and_ncc_share_no_test_patient(luna16_scans, tmp_path):
    """The official subset split (auto on LUNA16): pretraining cubes come from subsets 0-6 only, and
    NCC tests on subsets 7-9. A random split for both put every NCC test patient in pretraining."""
    from semantic_genesis.finetune import tasks
    from semantic_genesis.finetune.data import split_by_patient
    from semantic_genesis.io.datasets.luna16 import subset_of

    cfg = _cfg("cubes.content_test=body", "cubes.body_min_fraction=0.5", "cubes.border_fraction=[0,0,0]",
               "finetune.crop_size=[16,16,8]", "finetune.max_negatives=2")
    summary = generate_cubes(cfg, luna16_scans, tmp_path / "cubes", progress=False)
    manifest = json.loads((tmp_path / "cubes" / "manifest.json").read_text())
    assert "LUNA16 subsets 0-4 train" in summary.split_rule
    records = ShardedArray(tmp_path / "cubes").all_records()
    subsets = {r["patient"]: subset_of(r["scan"]) for r in records}
    for pid, split in manifest["attrs"]["splits"].items():
        assert split == ("train" if subsets[pid] < 5 else "validation" if subsets[pid] < 7 else "test")
    pretrained = set(manifest["attrs"]["split_patients"]["train"]) | set(manifest["attrs"]["split_patients"]["validation"])
    data = tasks.get("ncc").load(luna16_scans, cfg)
    split = split_by_patient(data, cfg.finetune.split, cfg.seed)
    test_patients = {data.patients[i] for i in split["test"]}
    assert len(test_patients) == 6 and not test_patients & pretrained
    # before: random splits for both (the old defaults)
    old = _cfg("cubes.content_test=body", "cubes.border_fraction=[0,0,0]", "cubes.split=[0.7,0.15,0.15]",
               "finetune.crop_size=[16,16,8]", "finetune.max_negatives=2", "finetune.split=[0.6,0.2,0.2]")
    generate_cubes(old, luna16_scans, tmp_path / "old", progress=False)
    old_manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    old_pretrained = {p for p, s in old_manifest["attrs"]["splits"].items() if s != "test"}
    old_data = tasks.get("ncc").load(luna16_scans, old)
    old_test = {old_data.patients[i] for i in split_by_patient(old_data, old.finetune.split, old.seed)["test"]}
    assert old_test and old_test <= old_pretrained  # the leak this default removes: 4 of 4 test patients


def test_paper_settings_on_the_default_phantom_name_the_option_to_change(tmp_path):
    from semantic_genesis.phantoms.cohort import write_native_ct_cohort

    write_native_ct_cohort(tmp_path / "ct", 2, seed=0, progress=False)  # 128x128x96 at 2.8x2.8x3.2 mm
    cfg = load_config("models_genesis_3d")
    with pytest.raises(DataError, match=r"no position passed the lung content test") as info:
        generate_cubes(cfg, tmp_path / "ct", tmp_path / "out", progress=False)
    message = str(info.value)
    assert "cubes.content_test=body" in message and "cubes.cube_size" in message
    assert "179 x 179 x 102 mm" in message  # 64x64x32 voxels of 2.8x2.8x3.2 mm


def test_an_official_split_the_layout_lacks_fails_before_any_scan_is_cut(scans, tmp_path):
    from semantic_genesis.errors import ConfigError

    with pytest.raises(ConfigError, match=r"cubes.split=official: the generic layout has no official split"):
        generate_cubes(_cfg("cubes.split=official"), scans, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
