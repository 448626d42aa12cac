"""The premise of Semantic Genesis holds on the phantom cohort: the same anatomy in the same places.

After aligning patients by their body bounding box, a local crop at one relative position in patient
A resembles the crop at the same relative position in patient B much more than crops at other
positions do, although the patients differ (body size, organs, rotation, shift, vessels, lesions).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from semantic_genesis.phantoms import make_ct_patient

SHAPE = (64, 64, 48)
CROP = (10, 10, 6)


@pytest.fixture(scope="module")
def cohort():
    return [make_ct_patient(i, seed=11, shape=SHAPE) for i in range(4)]


def _body_box(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    body = hu > -500
    lo = np.array([np.nonzero(body.any(axis=tuple(a for a in range(3) if a != k)))[0].min() for k in range(3)])
    hi = np.array([np.nonzero(body.any(axis=tuple(a for a in range(3) if a != k)))[0].max() for k in range(3)])
    return lo, hi


def _crop(hu: np.ndarray, rel: np.ndarray, box: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    lo, hi = box
    centre = lo + rel * (hi - lo)
    start = np.clip(np.round(centre - np.array(CROP) / 2).astype(int), 0, np.array(SHAPE) - CROP)
    sl = tuple(slice(s, s + c) for s, c in zip(start, CROP))
    return np.clip(hu[sl].astype(np.float32), -1000, 1000).ravel()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def test_same_relative_position_is_more_similar(cohort):
    rels = np.array(list(itertools.product([0.25, 0.5, 0.75], [0.3, 0.5, 0.7], [0.3, 0.5, 0.7])))
    boxes = [_body_box(p.hu) for p in cohort]
    crops = [[_crop(p.hu, r, b) for r in rels] for p, b in zip(cohort, boxes)]
    same, different = [], []
    for i, j in itertools.combinations(range(len(cohort)), 2):
        for k in range(len(rels)):
            same.append(_corr(crops[i][k], crops[j][k]))
            for m in range(len(rels)):
                if m != k:
                    different.append(_corr(crops[i][k], crops[j][m]))
    same_m, diff_m = float(np.mean(same)), float(np.mean(different))
    assert same_m > diff_m + 0.3, (same_m, diff_m)
    # and for most positions the best match in the other patient is the same position
    hits = 0
    for i, j in itertools.permutations(range(len(cohort)), 2):
        for k in range(len(rels)):
            scores = [_corr(crops[i][k], crops[j][m]) for m in range(len(rels))]
            hits += int(np.argmax(scores) == k)
    assert hits / (len(cohort) * (len(cohort) - 1) * len(rels)) > 0.5


def test_patients_differ(cohort):
    a, b = cohort[0].hu.astype(np.float32), cohort[1].hu.astype(np.float32)
    assert np.mean(np.abs(a - b) > 200) > 0.03  # not the same image
