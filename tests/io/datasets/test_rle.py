"""SIIM-ACR run-length encoding: convention, exact round trip, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from semantic_genesis.errors import DataError
from semantic_genesis.io.datasets.rle import rle_decode, rle_encode


def test_convention_is_column_major_with_relative_starts():
    mask = np.zeros((4, 3), dtype=bool)  # H=4, W=3
    mask[1:3, 0] = True  # column 0, rows 1-2 -> flat 1, 2
    mask[0, 1] = True  # column 1, row 0 -> flat 4
    mask[3, 2] = True  # column 2, row 3 -> flat 11 (the last pixel)
    # runs (absolute): start 1 len 2, start 4 len 1, start 11 len 1; relative starts: 1, 4-3=1, 11-5=6
    assert rle_encode(mask) == "1 2 1 1 6 1"
    np.testing.assert_array_equal(rle_decode("1 2 1 1 6 1", 4, 3), mask)


def test_empty_mask_is_minus_one():
    assert rle_encode(np.zeros((5, 7), dtype=np.uint8)) == "-1"
    decoded = rle_decode("-1", 5, 7)
    assert decoded.shape == (5, 7) and not decoded.any()
    assert not rle_decode("  ", 5, 7).any()


def test_full_mask_and_255_valued_masks():
    full = np.full((3, 5), 255, dtype=np.uint8)
    assert rle_encode(full) == "0 15"
    assert rle_decode("0 15", 3, 5).all()


def test_matches_competition_reference_decoder():
    # The competition decoder: cumulative position, fill, reshape (width, height), transpose.
    rng = np.random.default_rng(0)
    mask = rng.random((16, 12)) > 0.7
    rle = rle_encode(mask)
    values = [int(v) for v in rle.split()]
    flat = np.zeros(16 * 12)
    pos = 0
    for start, length in zip(values[0::2], values[1::2]):
        pos += start
        flat[pos : pos + length] = 1
        pos += length
    np.testing.assert_array_equal(flat.reshape(12, 16).T.astype(bool), mask)


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_round_trip_exact(mask):
    decoded = rle_decode(rle_encode(mask), *mask.shape)
    assert decoded.dtype == bool
    np.testing.assert_array_equal(decoded, mask)


def test_overrun_names_where():
    with pytest.raises(DataError, match=r"train-rle.csv row 7.*overruns.*4x4 image has 16 pixels"):
        rle_decode("10 3 2 5", 4, 4, where="train-rle.csv row 7")


@pytest.mark.parametrize("bad", ["1 2 3", "a b", "-2 3", "1 0"])
def test_malformed_strings(bad):
    with pytest.raises(DataError):
        rle_decode(bad, 4, 4)


def test_encode_rejects_3d():
    with pytest.raises(DataError, match="2D"):
        rle_encode(np.zeros((2, 2, 2)))
