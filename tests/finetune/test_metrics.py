import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_iou
from sklearn.metrics import roc_auc_score

from semantic_genesis.errors import DataError
from semantic_genesis.finetune import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    labels[:2] = [0, 1]
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # rounding creates many ties
    assert metrics.roc_auc(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(
        roc_auc_score(labels, scores), abs=1e-12
    )


def test_roc_auc_known_values():
    assert metrics.roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert metrics.roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert metrics.roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    # 3 positive-negative pairs of 4 ordered correctly.
    assert metrics.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_roc_auc_bad_input():
    with pytest.raises(DataError, match="both classes"):
        metrics.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(DataError, match="0 or 1"):
        metrics.roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(DataError, match="NaN"):
        metrics.roc_auc([math.nan, 0.2], [0, 1])
    with pytest.raises(DataError, match="3 scores but 2 labels"):
        metrics.roc_auc([0.1, 0.2, 0.3], [0, 1])


@pytest.mark.parametrize("ignore_empty", [False, True])
def test_dice_iou_match_monai(ignore_empty):
    g = torch.Generator().manual_seed(0)
    prob = torch.rand(6, 1, 8, 8, 4, generator=g)
    target = (torch.rand(6, 1, 8, 8, 4, generator=g) > 0.6).float()
    target[4] = 0  # empty ground truth, non-empty prediction
    target[5] = 0
    prob[5] = 0.1  # empty ground truth and empty prediction
    binary = (prob >= 0.5).float()
    ref_dice = compute_dice(binary, target, include_background=True, ignore_empty=ignore_empty)[:, 0].double()
    ref_iou = compute_iou(binary, target, include_background=True, ignore_empty=ignore_empty)[:, 0].double()
    ours_dice = metrics.dice_per_case(prob, target, ignore_empty=ignore_empty)
    ours_iou = metrics.iou_per_case(prob, target, ignore_empty=ignore_empty)
    torch.testing.assert_close(ours_dice, ref_dice, equal_nan=True, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours_iou, ref_iou, equal_nan=True, rtol=1e-6, atol=1e-6)
    assert metrics.dice(prob, target, ignore_empty=ignore_empty) == pytest.approx(float(np.nanmean(ref_dice)))
    if not ignore_empty:
        assert ours_dice[4] == 0.0 and ours_dice[5] == 1.0


def test_dice_iou_known_values():
    pred = torch.tensor([[0.9, 0.9, 0.1, 0.1]])
    target = torch.tensor([[1, 0, 0, 0]])
    assert metrics.dice(pred, target) == pytest.approx(2 / 3)
    assert metrics.iou(pred, target) == pytest.approx(1 / 2)
    # Threshold is inclusive at 0.5, as in the official evaluation (prediction >= 0.5).
    assert metrics.dice(torch.tensor([[0.5, 0.49]]), torch.tensor([[1, 0]])) == 1.0


def test_dice_shape_mismatch():
    with pytest.raises(DataError, match=r"\(2, 3\) != target \(2, 4\)"):
        metrics.dice(torch.zeros(2, 3), torch.zeros(2, 4))
