"""Reference strategies ('paper' and the official 'per_class') and count checks."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.config import DiscoveryConfig
from semantic_genesis.discovery.coordinates import body_frame
from semantic_genesis.discovery.plan import check_counts, make_plan
from semantic_genesis.errors import ConfigError


def _cohort(n=10, n_val=3):
    """Synthetic scans: a body box whose size grows with the patient index; features = that size."""
    ids, splits, units = [], [], {}
    for k in range(n):
        pid = f"p{k:02d}"
        v = np.zeros((40, 40, 24), np.float32)
        half = 10 + k
        v[20 - half : 20 + half, 20 - half : 20 + half, 2:22] = 0.6
        ids.append(pid)
        splits.append("validation" if k >= n - n_val else "train")
        units[pid] = v
    features = np.array([[float(k), 0.0] for k in range(n)], np.float32)
    frames = {pid: body_frame(u) for pid, u in units.items()}
    return ids, splits, features, frames, units


def _cfg(**kw):
    base = dict(num_neighbours=3, num_val_neighbours=2, num_classes=4, classes_per_reference=2,
                pattern_size=(8, 8, 8), content_test="body", body_min_fraction=0.9, min_distance=3.0)
    base.update(kw)
    return DiscoveryConfig(**base)


def test_paper_strategy_one_reference_many_coordinates():
    ids, splits, features, frames, units = _cohort()
    groups = make_plan(ids, splits, features, frames, units.__getitem__, _cfg(), seed=0, log=lambda s: None)
    assert [g.labels for g in groups] == [[0, 1], [2, 3]]
    assert len({g.reference for g in groups}) == 2
    for g in groups:
        assert g.neighbours[0] == g.reference and len(g.neighbours) == 3
        k = int(g.reference[1:])
        # features are the patient index, so the neighbours are the train patients closest in index
        train_k = [i for i in range(10) if splits[i] == "train"]
        expected = sorted(train_k, key=lambda i: (abs(i - k), i))[:3]
        assert sorted(int(p[1:]) for p in g.neighbours) == sorted(expected)
        assert g.val_neighbours == ["p07", "p08"]
        assert g.coordinates.shape == (2, 3)


def test_per_class_strategy_one_reference_per_class():
    ids, splits, features, frames, units = _cohort()
    groups = make_plan(ids, splits, features, frames, units.__getitem__, _cfg(strategy="per_class"), seed=0,
                       log=lambda s: None)
    assert [g.labels for g in groups] == [[0], [1], [2], [3]]
    assert len({g.reference for g in groups}) == 4


def test_plan_is_reproducible_from_the_seed():
    ids, splits, features, frames, units = _cohort()
    a = make_plan(ids, splits, features, frames, units.__getitem__, _cfg(), seed=3, log=lambda s: None)
    b = make_plan(ids, splits, features, frames, units.__getitem__, _cfg(), seed=3, log=lambda s: None)
    assert [g.to_dict() for g in a] == [g.to_dict() for g in b]


def test_failing_references_are_skipped():
    ids, splits, features, frames, units = _cohort()
    units = dict(units)
    messages = []
    # the first reference the seed picks has no body: it is skipped, the next one is used
    first = make_plan(ids, splits, features, frames, units.__getitem__, _cfg(num_classes=2), 0, log=messages.append)[0]
    units[first.reference] = np.zeros_like(units[first.reference])
    groups = make_plan(ids, splits, features, frames, units.__getitem__, _cfg(num_classes=2), 0, log=messages.append)
    assert groups[0].reference != first.reference
    assert any(f"skipping reference {first.reference}" in m for m in messages)


def test_counts_that_the_cohort_cannot_serve():
    with pytest.raises(ConfigError, match=r"K=8 is larger than the 7 train patients"):
        check_counts(_cfg(num_neighbours=8), 7, 3)
    with pytest.raises(ConfigError, match=r"num_val_neighbours=4 is larger than the 3 validation"):
        check_counts(_cfg(num_val_neighbours=4), 7, 3)
    with pytest.raises(ConfigError, match=r"C=9 .* needs 9 distinct reference patients .* only 7"):
        check_counts(_cfg(num_classes=9, strategy="per_class"), 7, 3)
    check_counts(_cfg(num_classes=9, classes_per_reference=9), 7, 3)  # one reference is enough
