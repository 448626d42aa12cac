"""Nearest patients by L2 distance (exact torch search, optional faiss)."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.discovery.neighbours import nearest
from semantic_genesis.errors import ConfigError


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 8)).astype(np.float32)
    queries = base[:5] + 0.0
    d, i = nearest(queries, base, 7)
    full = np.linalg.norm(queries[:, None, :] - base[None], axis=2)
    expected = np.argsort(full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(i, expected)
    np.testing.assert_allclose(d, np.take_along_axis(full, expected, 1), rtol=1e-5, atol=1e-5)
    assert np.all(i[:, 0] == np.arange(5))  # a query in the base set is its own nearest, distance 0
    assert np.all(d[:, 0] < 1e-5) and np.all(np.diff(d, axis=1) >= 0)


def test_ties_are_broken_by_index():
    base = np.zeros((6, 3), np.float32)
    _, i = nearest(base[:1], base, 6)
    assert i[0].tolist() == [0, 1, 2, 3, 4, 5]


def test_k_larger_than_the_set_names_k_and_count():
    base = np.zeros((4, 3), np.float32)
    with pytest.raises(ConfigError, match=r"discovery.num_neighbours=5 .* only 4 patients"):
        nearest(base[:1], base, 5, what="discovery.num_neighbours")
    d, i = nearest(base[:2], base, 0)
    assert d.shape == (2, 0) and i.shape == (2, 0)


def test_faiss_gives_the_same_neighbours():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    base = rng.normal(size=(200, 16)).astype(np.float32)
    d1, i1 = nearest(base[:10], base, 5, backend="torch")
    d2, i2 = nearest(base[:10], base, 5, backend="faiss")
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, atol=1e-3)
