import numpy as np
import pytest

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.finetune.data import TaskData, extract_crop, sample_volume_crops, split_by_patient

from .conftest import blob_task


def test_split_by_patient_disjoint_stratified_deterministic():
    data = blob_task(n=90, patients=15)
    split = split_by_patient(data, (0.6, 0.2, 0.2), seed=3)
    groups = {k: {data.patients[i] for i in v} for k, v in split.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"]) and not (groups["val"] & groups["test"])
    assert sorted(np.concatenate(list(split.values()))) == list(range(90))
    assert [len(g) for g in groups.values()] == [9, 3, 3]
    for idx in split.values():  # every set has both classes
        assert set(np.asarray(data.targets)[idx]) == {0, 1}
    again = split_by_patient(data, (0.6, 0.2, 0.2), seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = split_by_patient(data, (0.6, 0.2, 0.2), seed=4)
    assert any(not np.array_equal(split[k], other[k]) for k in split)


def test_label_fraction_keeps_val_and_test():
    data = blob_task(n=90, patients=15)
    full = split_by_patient(data, seed=1)
    few = split_by_patient(data, seed=1, label_fraction=0.34)
    assert np.array_equal(full["test"], few["test"]) and np.array_equal(full["val"], few["val"])
    assert len({data.patients[i] for i in few["train"]}) == 3
    assert set(few["train"]) <= set(full["train"])
    with pytest.raises(ConfigError, match="label_fraction"):
        split_by_patient(data, label_fraction=0)


def test_label_fractions_are_nested_and_stratified():
    data = blob_task(n=200, patients=40)
    data.targets[[i for i, p in enumerate(data.patients) if int(p[1:]) >= 28]] = 0  # 12 patients without a positive
    full = split_by_patient(data, seed=2)
    pos_patients = lambda idx: {data.patients[i] for i in idx if data.positive(i)}
    all_patients = lambda idx: {data.patients[i] for i in idx}
    previous = set(full["train"])
    share = len(pos_patients(full["train"])) / len(all_patients(full["train"]))
    for fraction in (0.75, 0.5, 0.25, 0.1):
        few = split_by_patient(data, seed=2, label_fraction=fraction)
        assert set(few["train"]) <= previous  # nested: every smaller set inside the larger one
        previous = set(few["train"])
        n = len(all_patients(few["train"]))
        assert abs(n - fraction * len(all_patients(full["train"]))) <= 1.0
        assert abs(len(pos_patients(few["train"])) - share * n) <= 1.0  # stratified
        assert pos_patients(few["train"]) and pos_patients(few["train"]) != all_patients(few["train"])


def test_split_errors():
    data = blob_task(n=6, patients=2)
    with pytest.raises(DataError, match="2 patient"):
        split_by_patient(data)
    with pytest.raises(ConfigError, match="summing to 1"):
        split_by_patient(blob_task(), (0.5, 0.2, 0.2))


def test_extract_crop_centre_and_padding():
    a = np.arange(10 * 12 * 6, dtype=np.float32).reshape(1, 10, 12, 6)
    crop = extract_crop(a, (5, 6, 3), (4, 4, 2))
    assert crop.shape == (1, 4, 4, 2)
    assert crop[0, 2, 2, 1] == a[0, 5, 6, 3]  # centre voxel at size // 2
    assert np.array_equal(crop, a[:, 3:7, 4:8, 2:4])
    edge = extract_crop(a, (0, 0, 0), (4, 4, 2), fill=-1)
    assert edge[0, 2, 2, 1] == a[0, 0, 0, 0]
    assert (edge[:, :2] == -1).all() and (edge[:, :, :2] == -1).all() and (edge[..., 0] == -1).all()
    with pytest.raises(DataError, match=r"crop of \(4, 4, 2\) voxels centred at \(100\.0, 0\.0, 0\.0\) lies entirely "
                                        r"outside the array of shape \(10, 12, 6\)"):
        extract_crop(a, (100, 0, 0), (4, 4, 2))
    assert extract_crop(a, (11, 0, 0), (4, 4, 2))[0, 0, 2, 1] == a[0, 9, 0, 0]  # partly outside: padded


def test_volume_crops_foreground_fraction():
    image = np.zeros((1, 40, 40, 24), np.float32)
    mask = np.zeros((1, 40, 40, 24), np.uint8)
    mask[0, 30:34, 5:9, 10:14] = 1
    rng = np.random.default_rng(0)
    crops, masks = sample_volume_crops([image], [mask], [0], (8, 8, 8), 200, 0.5, rng)
    assert crops.shape == (200, 1, 8, 8, 8) and masks.shape == (200, 1, 8, 8, 8)
    centred = masks[:, 0, 4, 4, 4].mean()  # crops centred on foreground have it at the centre
    assert 0.4 < centred < 0.62
    _, none = sample_volume_crops([image], [mask], [0], (8, 8, 8), 50, 1.0, rng)
    assert none[:, 0, 4, 4, 4].all()
