"""LabelledImages: validation, label views, subsets and patient-disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.errors import DataError
from semantic_genesis.io.datasets.labelled import LabelledImages, normalise_sex, patient_disjoint_split


def _set(labels, task="multi-label", names=None, pids=None, **kwargs):
    labels = np.asarray(labels, dtype=np.float32)
    n = len(labels)
    return LabelledImages(
        dataset="toy",
        split="train",
        paths=tuple(f"/x/{i}.png" for i in range(n)),
        labels=labels,
        label_names=tuple(names or [f"c{j}" for j in range(labels.shape[1])]),
        task=task,
        patient_ids=tuple(pids or [f"p{i // 2}" for i in range(n)]),
        image_ids=tuple(f"i{i}" for i in range(n)),
        **kwargs,
    )


def test_views_and_subsets():
    s = _set([[1, 0, np.nan], [0, 0.7, 1], [0, 0, 0], [1, 1, np.nan]], sex=("M", "F", None, "F"), age=[30, 40, np.nan, 50])
    assert len(s) == 4 and s.num_classes == 3
    assert s.known.tolist() == [[True, True, False], [True] * 3, [True] * 3, [True, True, False]]
    assert np.isnan(s.labels).sum() == 2 and not np.isnan(s.filled(0.5)).any() and s.filled(0.5)[0, 2] == 0.5
    assert s.positives() == {"c0": 2, "c1": 2, "c2": 1}
    with pytest.raises(ValueError):
        s.labels[0, 0] = 0.0  # read-only
    sub = s.select([3, 1])
    assert sub.image_ids == ("i3", "i1") and sub.sex == ("F", "F") and sub.age.tolist() == [50, 40]
    np.testing.assert_array_equal(sub.labels[1], np.float32([0, 0.7, 1]))
    assert s.select(np.array([True, False, False, True])).image_ids == ("i0", "i3")
    r = s.restrict_labels(["c2", "c0"])
    assert r.label_names == ("c2", "c0") and r.labels[1].tolist() == [1, 0] and r.notes["restricted_to"] == ["c2", "c0"]
    with pytest.raises(DataError, match="unknown label 'c9'"):
        s.restrict_labels(["c9"])
    assert "toy train: 4 images, 2 patients, multi-label, 3 classes" in s.summary()


def test_multi_class_and_binary_rules():
    mc = _set([[1, 0, 0], [0, 0, 1], [np.nan] * 3], task="multi-class")
    assert mc.class_indices().tolist() == [0, 2, -1]
    with pytest.raises(DataError, match="one-hot"):
        _set([[1, 1, 0]], task="multi-class")
    with pytest.raises(DataError, match="restricted"):
        mc.restrict_labels(["c0"])
    with pytest.raises(DataError, match="binary task has one label column"):
        _set([[1, 0]], task="binary")
    with pytest.raises(DataError, match="class indices need a multi-class set"):
        _set([[1.0]], task="binary").class_indices()
    with pytest.raises(DataError, match=r"labels must be in \[0, 1\]"):
        _set([[2.0]], task="binary")
    with pytest.raises(DataError, match=r"labels must be \(N, C\) = \(1, 2\)"):
        LabelledImages("toy", "x", ("/a",), np.zeros((1, 3)), ("a", "b"), "multi-label", ("p",), ("i",))
    with pytest.raises(DataError, match="image ids are not unique"):
        LabelledImages("toy", "x", ("/a", "/b"), np.zeros((2, 1)), ("a",), "binary", ("p", "q"), ("i", "i"))
    with pytest.raises(DataError, match="task must be one of"):
        _set([[1.0]], task="regression")


def test_patient_disjoint_split():
    pids = [f"p{i % 37}" for i in range(200)]
    held = patient_disjoint_split(pids, 0.2, seed=3)
    held_p = {p for p, h in zip(pids, held) if h}
    rest_p = {p for p, h in zip(pids, held) if not h}
    assert not held_p & rest_p and len(held_p) == round(0.2 * 37)
    # the choice does not depend on the order of the samples
    order = np.random.default_rng(0).permutation(200)
    held2 = patient_disjoint_split([pids[i] for i in order], 0.2, seed=3)
    assert {pids[i] for i, h in zip(order, held2) if h} == held_p
    assert {p for p, h in zip(pids, patient_disjoint_split(pids, 0.2, seed=4)) if h} != held_p
    assert not patient_disjoint_split(pids, 0.0).any() and not patient_disjoint_split(["a", "a"], 0.5).any()
    assert patient_disjoint_split(["a", "b"], 0.01).sum() == 1  # at least one, never all
    with pytest.raises(DataError, match=r"fraction must be in \[0, 1\)"):
        patient_disjoint_split(pids, 1.0)
    s = _set(np.zeros((10, 1)), task="binary")
    train, val = s.split_patients(0.4, seed=1)
    assert len(train) + len(val) == 10 and not set(train.patient_ids) & set(val.patient_ids)
    assert (train.split, val.split) == ("train", "val")


def test_normalise_sex():
    assert [normalise_sex(v) for v in ("M", "male", "Female", "f", "", "Unknown", None)] == ["M", "M", "F", "F", None, None, None]
    with pytest.raises(DataError, match=r"row 3: unknown sex 'X'"):
        normalise_sex("X", "row 3")


def test_dicom_demographics(tmp_path):
    from semantic_genesis.io.datasets.labelled import dicom_demographics
    from semantic_genesis.io.images2d import Image2D, write_image2d

    image = Image2D(np.zeros((4, 4), np.float32))
    write_image2d(image, tmp_path / "a.dcm", attributes={"PatientSex": "F", "PatientAge": "018M"})
    write_image2d(image, tmp_path / "b.dcm", attributes={"PatientSex": "O"})
    assert dicom_demographics(tmp_path / "a.dcm") == ("F", 1.5)
    sex, age = dicom_demographics(tmp_path / "b.dcm")
    assert sex is None and np.isnan(age)
    (tmp_path / "c.dcm").write_bytes(b"not a dicom")
    assert dicom_demographics(tmp_path / "c.dcm")[0] is None
