"""Official splits of LUNA16, LiTS and BraTS, and the split rule shared by cubes, discover and finetune."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from semantic_genesis.errors import ConfigError
from semantic_genesis.io.datasets import brats, lits, luna16
from semantic_genesis.io.datasets.splits import choose_split, official_split


def _luna(n: int) -> list[tuple[str, Path]]:
    """``n`` scans spread over the subsets as the phantom export does (patient i in subset i % 10)."""
    return [(f"uid{i:02d}", Path(f"/data/subset{i % 10}/uid{i:02d}.mhd")) for i in range(n)]


def test_luna16_split_by_subset():
    split = luna16.official_split(dict(_luna(20)))
    for i in range(20):
        assert split[f"uid{i:02d}"] == ("train" if i % 10 < 5 else "validation" if i % 10 < 7 else "test")
    assert luna16.subset_of("/x/subset7/a.mhd") == 7 and luna16.subset_of("/x/other/a.mhd") is None
    assert luna16.official_split({"a": "/x/extra/a.mhd"}) == {"a": None}


def test_lits_official_case_ranges():
    split = lits.official_split(range(131))
    assert [c for c, s in split.items() if s == "train"] == list(range(100))
    assert [c for c, s in split.items() if s == "validation"] == list(range(100, 115))
    assert [c for c, s in split.items() if s == "test"] == list(range(115, 130))
    assert split[130] is None  # the 131st training volume is not used by the official lists


def test_brats_official_lists_reproduce_the_official_procedure():
    from semantic_genesis.io.datasets._brats18_folds import FOLD_1, FOLD_2, FOLD_3

    lists = brats.official_lists()
    # the official bms_config: fold 1 + fold 2, random.Random(4).shuffle, first len // 8 validation
    pool = list(FOLD_1) + list(FOLD_2)
    random.Random(4).shuffle(pool)
    assert lists["validation"] == pool[: len(pool) // 8] and lists["train"] == pool[len(pool) // 8 :]
    assert lists["test"] == list(FOLD_3)
    assert [len(lists[k]) for k in ("train", "validation", "test")] == [167, 23, 95]
    assert len({*lists["train"], *lists["validation"], *lists["test"]}) == 285
    # pinned: the first validation patients of the official list (guards the fold data and the shuffle)
    assert lists["validation"][:3] == ["Brats18_CBICA_AXW_1", "Brats18_TCIA02_605_1", "Brats18_TCIA10_387_1"]
    assert brats.official_split(["Brats18_2013_2_1", "Brats18_PHANTOM_000_1"]) == {
        "Brats18_2013_2_1": "test", "Brats18_PHANTOM_000_1": None}


def test_auto_uses_luna16_subsets_when_every_needed_split_has_patients():
    choice = choose_split("auto", "luna16", _luna(20), needs=("train", "validation", "test"))
    assert choice.rule == "official" and "subsets 0-4" in choice.description
    assert sorted(choice.assignment.values()).count("test") == 6
    warnings: list[str] = []
    small = choose_split("auto", "luna16", _luna(6), needs=("train", "validation", "test"), warn=warnings.append)
    assert small.rule == "random" and "test" in warnings[0] and "empty" in warnings[0]
    # cubes need no test split: six LUNA16 scans (subsets 0-5) still get the subset split
    assert choose_split("auto", "luna16", _luna(6), needs=("train", "validation")).rule == "official"


def test_auto_is_random_for_layouts_without_a_self_evident_split():
    for layout in ("native", "generic", "lits", "brats"):
        assert choose_split("auto", layout, [("volume-1", "a")]).rule == "random"
    assert choose_split([0.5, 0.25, 0.25], "luna16", _luna(20)).rule == "random"
    assert choose_split("random", "luna16", _luna(20)).rule == "random"


def test_official_split_errors_and_warnings():
    with pytest.raises(ConfigError, match=r"cubes.split=official: the native layout has no official split"):
        choose_split("official", "native", [("a", "a.nii.gz")], key="cubes.split")
    with pytest.raises(ConfigError, match="none of the 1 patients"):
        choose_split("official", "brats", [("Brats18_PHANTOM_000_1", "x")])
    warnings: list[str] = []
    choice = choose_split("official", "lits", [(f"volume-{i}", "x") for i in (0, 101, 120, 130)], warn=warnings.append)
    assert choice.assignment == {"volume-0": "train", "volume-101": "validation", "volume-120": "test"}
    assert choice.left_out == ("volume-130",) and "left out" in warnings[0]
    with pytest.raises(ConfigError, match="not one of"):
        choose_split("subset", "luna16", _luna(3))


def test_official_split_dispatch_by_layout():
    assert official_split("native", [("a", "x")]) is None
    assert official_split("lits", [("volume-7", "x"), ("liver", "y")]) == {"volume-7": "train", "liver": None}
