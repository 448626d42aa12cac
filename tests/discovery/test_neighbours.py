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


@pytest.mark.parametrize("block", [7, 64, 10_000])
def test_exact_ranking_with_blocks_and_near_ties(block):
    """The float32 block search returns the exact float64 ranking, also across blocks smaller than k and
    for vectors whose distances differ below float32 resolution (ties by index)."""
    rng = np.random.default_rng(2)
    base = rng.normal(size=(300, 64)).astype(np.float32) * 10
    base[100:140] = base[5] + rng.normal(size=(40, 64)).astype(np.float32) * 1e-4  # near ties around item 5
    base[200:203] = base[5]  # exact ties
    queries = np.concatenate([base[[5, 17]], rng.normal(size=(3, 64)).astype(np.float32)])
    d, i = nearest(queries, base, 50, backend="torch", block=block)
    exact = ((queries[:, None, :].astype(np.float64) - base[None].astype(np.float64)) ** 2).sum(2)
    expected = np.stack([np.lexsort((np.arange(300), row))[:50] for row in exact])
    np.testing.assert_array_equal(i, expected)
    np.testing.assert_allclose(d, np.sqrt(np.take_along_axis(exact, expected, 1)), rtol=1e-6)
    assert i[0, :4].tolist() == [5, 200, 201, 202]  # the query and its exact copies, by index
