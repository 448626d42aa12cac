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
    """HU volume: tissue (+40 HU) with a dark 'lung' (-850 HU) occupying the lower half in X, plus noise."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, 40.0, dtype=np.float32)
    hu[: shape[0] // 2] = -850.0
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


def test_lung_test_accepts_only_dark_cubes():
    unit = (np.clip(_chest(seed=3), -1000, 1000) + 1000) / 2000
    cfg = _cfg("cubes.cubes_per_scan=20", "cubes.border_fraction=[0,0,0]").cubes
    cubes, records = sample_cubes(unit.astype(np.float32), cfg, np.random.default_rng(0))
    assert cubes.shape == (20, 1, 16, 16, 8) and cubes.dtype == np.float32
    assert all(r["score"] <= 0.15 for r in records)
    for cube, r in zip(cubes, records):
        x, y, z = r["position"]
        assert x + 16 <= 24 + 2  # the dark half (X < 24), at most a sliver of tissue
        np.testing.assert_array_equal(cube[0], unit[x : x + 16, y : y + 16, z : z + 8].astype(np.float32))
        assert cube.mean() < 0.2


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
