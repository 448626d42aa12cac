"""finetune.split=official reproduces the official LCS (LiTS) and BMS (BraTS 2018) lists; LiTS volumes
resized to 256x256 in-plane as the official data (here: a smaller size on small phantoms)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from semantic_genesis.errors import ConfigError
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.data import split_by_patient
from semantic_genesis.io.datasets.brats import official_lists

from .conftest import tiny_config


def _renamed_lits(src: Path, dst: Path, cases: dict[int, int]) -> Path:
    dst.mkdir(parents=True)
    for old, new in cases.items():
        for kind in ("volume", "segmentation"):
            shutil.copy(src / f"{kind}-{old}.nii", dst / f"{kind}-{new}.nii")
    return dst


def test_lcs_official_split_and_inplane_resize(phantom_root, tmp_path):
    root = _renamed_lits(phantom_root / "lits", tmp_path / "lits", {0: 3, 1: 100, 2: 120, 3: 130})
    cfg = tiny_config("finetune.split=official", "finetune.resize_inplane=32")
    data = tasks.get("lcs").load(root, cfg)
    assert data.patients == ["volume-3", "volume-100", "volume-120", "volume-130"]
    split = split_by_patient(data, cfg.finetune.split, cfg.seed)
    assert {k: v.tolist() for k, v in split.items()} == {"train": [0], "val": [1], "test": [2]}  # 130: unused
    assert "LiTS cases 0-99 train" in data.info["split_rule"]
    assert data.images[0].shape == (1, 32, 32, 48) and data.targets[0].shape == (1, 32, 32, 48)
    assert set(np.unique(data.targets[0])) == {0, 1} and 0 <= data.images[0].min() and data.images[0].max() <= 1
    native = tasks.get("lcs").load(root, tiny_config("finetune.split=official"))
    # the resized liver covers the same share of each slice as the native one (nearest-neighbour mask)
    assert abs(data.targets[0].mean() - native.targets[0].mean()) < 0.01
    # the default (auto) keeps a random split on LiTS: the case lists name the full challenge data
    assert tasks.get("lcs").load(root, tiny_config()).fixed_split is None


def _renamed_brats(tmp_path: Path, ids: list[str]) -> Path:
    from semantic_genesis.phantoms.export import export_mri_cohort

    src = tmp_path / "phantom"
    export_mri_cohort(src, len(ids), seed=0, layout="brats", shape=(32, 32, 24))
    root = tmp_path / "brats"
    root.mkdir()
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder, new in zip(folders, ids):
        target = root / new
        target.mkdir()
        for f in folder.iterdir():
            shutil.copy(f, target / f.name.replace(folder.name, new))
    return root


def test_bms_official_folds(tmp_path):
    lists = official_lists()
    ids = [lists["train"][0], lists["validation"][0], lists["test"][0], "Brats18_NOT_IN_A_FOLD_1"]
    root = _renamed_brats(tmp_path, ids)
    cfg = tiny_config("finetune.split=official", "intensity.modality=mri")
    data = tasks.get("bms").load(root, cfg)
    split = split_by_patient(data, cfg.finetune.split, cfg.seed)
    named = {k: [data.patients[i] for i in v] for k, v in split.items()}
    assert named == {"train": [ids[0]], "val": [ids[1]], "test": [ids[2]]}
    assert "BraTS 2018 folds" in data.info["split_rule"]


def test_official_split_without_official_lists_is_refused(phantom_root):
    with pytest.raises(ConfigError, match="finetune.split=official: task ncs has no official split"):
        data = tasks.get("ncs").load(phantom_root / "native", tiny_config("finetune.split=official"))
        split_by_patient(data, "official", 0)
