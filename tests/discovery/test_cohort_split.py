"""The discovery cohort: split after unreadable and constant scans are dropped, LUNA16 by subset
(test subsets left out), the split recorded in the pattern set, anti-aliased autoencoder inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from semantic_genesis.discovery.pipeline import _stage_scans
from semantic_genesis.discovery.scans import load_unit_scan, plan_cohort, split_patients
from semantic_genesis.io.datasets import list_scans
from semantic_genesis.io.volumes import Volume, write_volume
from semantic_genesis.preprocess import resize

from .conftest import tiny_config


def _generic_cohort(cohort: Path, root: Path, n: int = 5) -> Path:
    """``n`` phantom scans as plain volume files, plus an unreadable and an all-constant scan."""
    root.mkdir(parents=True)
    for path in sorted((cohort / "images").glob("*.nii.gz"))[:n]:
        shutil.copy(path, root / path.name)
    (root / "broken.nii.gz").write_bytes(b"not a volume")
    write_volume(Volume(np.full((48, 48, 40), -1000.0, np.float32), (7.5, 7.5, 7.5), metadata={"modality": "ct"}),
                 root / "constant.nii.gz", dtype="int16")
    return root


def test_bad_scans_are_skipped_and_the_split_is_drawn_over_the_readable_ones(cohort, tmp_path):
    data = _generic_cohort(cohort, tmp_path / "scans")
    cfg = tiny_config("discovery.val_fraction=0.2")
    warnings: list[str] = []
    plan = plan_cohort(list_scans(data), cfg.discovery, "generic", cfg.seed, warnings.append)
    assert plan.official is None and len(plan.candidates) == 7
    store, splits = _stage_scans(cfg, plan, tmp_path / "run" / "scans", lambda s: None, warnings.append)
    assert any("broken.nii.gz" in w for w in warnings)
    assert any("constant.nii.gz" in w and "every voxel has the value -1000" in w for w in warnings)
    readable = sorted(p.stem.split(".")[0] for p in data.glob("phantom_ct_*.nii.gz"))
    assert sorted(splits) == readable and len(store) == 5
    expected = {p.patient_id: p.split for p in split_patients(
        [type("R", (), {"patient_id": pid, "path": pid})() for pid in readable], 0.2, cfg.seed)}
    assert splits == expected and sorted(splits.values()).count("validation") == 1
    manifest = store.manifest
    assert set(manifest["attrs"]["skipped"]) == {"broken", "constant"}
    assert manifest["attrs"]["split_patients"]["validation"] == [p for p, s in splits.items() if s == "validation"]
    assert {s["split"] for s in manifest["shards"]} == {"train", "validation"}
    # the autoencoder input is the scan resized with scikit-image's anti-aliasing rule (48x48x40 -> 32x32x16)
    pid = readable[0]
    item = store.item([r["patient"] for r in store.all_records()].index(pid))
    unit = load_unit_scan(data / f"{pid}.nii.gz", cfg.intensity)
    np.testing.assert_allclose(item[0], resize(unit, (32, 32, 16), anti_aliasing=True), atol=1e-3)  # float16 store
    assert np.abs(item[0] - resize(unit, (32, 32, 16))).max() > 0.01


@pytest.fixture(scope="module")
def luna16_cohort(tmp_path_factory) -> Path:
    from semantic_genesis.phantoms.export import export_ct_cohort

    root = tmp_path_factory.mktemp("discovery_luna16") / "luna16"
    export_ct_cohort(root, 20, seed=0, layout="luna16", shape=(32, 32, 24))
    return root


def test_luna16_discovery_uses_subsets_0_to_6_and_leaves_the_test_subsets_out(luna16_cohort):
    from semantic_genesis.io.datasets.luna16 import subset_of

    refs = list_scans(luna16_cohort)
    cfg = tiny_config()
    plan = plan_cohort(refs, cfg.discovery, "luna16", cfg.seed)
    subset = {r.patient_id: subset_of(r.path) for r in refs}
    assert {subset[r.patient_id] for r in plan.candidates} == set(range(7))
    assert {subset[p] for p in plan.left_out} == {7, 8, 9} and len(plan.left_out) == 6
    assert all(s == ("train" if subset[p] < 5 else "validation") for p, s in plan.official.items())
    assert "test patients left out" in plan.description
    random_plan = plan_cohort(refs, tiny_config("discovery.split=random").discovery, "luna16", cfg.seed)
    assert random_plan.official is None and len(random_plan.candidates) == 20


def test_pattern_set_records_the_patients_of_each_split(discovered):
    from semantic_genesis.io.shards import read_manifest

    attrs = read_manifest(discovered.patterns)["attrs"]
    assert attrs["splits"] == dict(zip(discovered.ids, discovered.splits))
    assert sorted(attrs["split_patients"]["train"] + attrs["split_patients"]["validation"]) == sorted(discovered.ids)
    assert "random by patient" in attrs["split_rule"] and attrs["left_out"] == [] and attrs["skipped"] == {}
