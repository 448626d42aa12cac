import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_iou
from sklearn.metrics import roc_auc_score

from semantic_genesis.errors import DataError
from semantic_genesis import metrics


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


def _sphere(radius: float, shape=(64, 64, 32), shift: int = 0) -> np.ndarray:
    g = np.indices(shape, dtype=np.float32)
    centre = (32 + shift, 32, 16)
    return sum((g[a] - centre[a]) ** 2 for a in range(3)) <= radius**2


def test_pooled_and_per_case_iou_of_shifted_nodules():
    """50 spheres (radius 1.75..12 voxels) predicted 2 voxels off: small nodules pull the per-case mean
    down, large ones dominate the pooled IoU (the official evaluation). Issue figures: 0.589 vs 0.719."""
    truths = [_sphere(r)[None] for r in np.linspace(1.75, 12, 50)]
    preds = [_sphere(r, shift=2)[None].astype(np.float32) for r in np.linspace(1.75, 12, 50)]
    inter = np.array([(p.astype(bool) & t).sum() for p, t in zip(preds, truths)], dtype=np.float64)
    union = np.array([(p.astype(bool) | t).sum() for p, t in zip(preds, truths)], dtype=np.float64)
    per_case = metrics.segmentation_scores(preds, truths, "per_case")
    pooled = metrics.segmentation_scores(preds, truths, "pooled")
    assert per_case["iou"] == pytest.approx(np.mean(inter / union), abs=1e-12)
    assert pooled["iou"] == pytest.approx(inter.sum() / union.sum(), abs=1e-12)
    assert per_case["iou"] == pytest.approx(0.590, abs=1e-3) and pooled["iou"] == pytest.approx(0.720, abs=1e-3)
    sizes = np.array([t.sum() for t in truths], dtype=np.float64) * 2
    assert pooled["dice"] == pytest.approx(2 * inter.sum() / sizes.sum(), abs=1e-12)
    assert per_case["dice"] == pytest.approx(np.mean(2 * inter / sizes), abs=1e-12)


def test_keras_mean_iou_is_two_class_iou_averaged_over_thresholds():
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(3)
    truths = [(rng.random((1, 12, 10, 6)) < 0.3) for _ in range(4)]
    probs = [np.clip(t * 0.6 + rng.random(t.shape) * 0.5, 0, 1).astype(np.float32) for t in truths]
    y = np.concatenate([t.ravel() for t in truths])
    p = np.concatenate([q.ravel() for q in probs])
    expected = np.mean([jaccard_score(y, p > t, average="macro") for t in np.arange(0.5, 1.0, 0.05)])
    assert metrics.KERAS_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert metrics.keras_mean_iou(probs, truths) == pytest.approx(expected, abs=1e-12)
    scores = metrics.segmentation_scores(probs, truths, "keras")
    assert scores["iou"] == pytest.approx(expected, abs=1e-12)
    assert scores["dice"] == pytest.approx(metrics.dice_pooled(probs, truths), abs=1e-15)
    # only background in the truth and the prediction: the foreground class is left out, IoU 1
    assert metrics.keras_mean_iou([np.zeros((2, 2))], [np.zeros((2, 2))]) == 1.0


def test_segmentation_scores_bad_definition_and_empty_cases():
    with pytest.raises(DataError, match="unknown IoU definition 'mean'"):
        metrics.segmentation_scores([np.zeros(3)], [np.zeros(3)], "mean")
    with pytest.raises(DataError, match="no cases"):
        metrics.segmentation_scores([], [], "pooled")
    assert metrics.iou_pooled([np.zeros(4)], [np.zeros(4)]) == 1.0
    assert set(metrics.IOU_DEFINITIONS) == {"pooled", "per_case", "keras"}


def _random_cases(seed: int, n: int = 5):
    rng = np.random.default_rng(seed)
    truths = [rng.random((1, 9, 7, 5)) < 0.25 for _ in range(n)]
    truths[-1][:] = False  # one case without foreground
    probs = [np.clip(t * 0.5 + rng.random(t.shape) * 0.6, 0, 1).astype(np.float32) for t in truths]
    probs[0][0, 0, 0, 0] = 0.5  # the threshold itself is foreground (p >= 0.5)
    return probs, truths


@pytest.mark.parametrize("seed", [0, 1])
def test_pooled_iou_and_dice_match_sklearn_on_flattened_voxels(seed):
    from sklearn.metrics import f1_score, jaccard_score

    probs, truths = _random_cases(seed)
    y = np.concatenate([t.ravel() for t in truths])
    p = np.concatenate([q.ravel() for q in probs]) >= 0.5
    assert metrics.iou_pooled(probs, truths) == pytest.approx(jaccard_score(y, p), abs=1e-12)
    assert metrics.dice_pooled(probs, truths) == pytest.approx(f1_score(y, p), abs=1e-12)
    scores = metrics.segmentation_scores(probs, truths, "pooled")
    assert scores == pytest.approx({"iou": jaccard_score(y, p), "dice": f1_score(y, p)}, abs=1e-12)


def test_per_case_scores_from_counts_match_monai():
    """The fine-tuning loop's per-case IoU / Dice (from confusion counts) equal MONAI's, empty case included."""
    probs, truths = _random_cases(2)
    probs[-1][:] = 0.1  # empty truth and empty prediction: 1 (the official empty_score)
    prob_t = torch.from_numpy(np.stack(probs))
    truth_t = torch.from_numpy(np.stack(truths)).float()
    binary = (prob_t >= 0.5).float()
    ref_iou = compute_iou(binary, truth_t, include_background=True, ignore_empty=False)[:, 0]
    ref_dice = compute_dice(binary, truth_t, include_background=True, ignore_empty=False)[:, 0]
    assert float(ref_iou[-1]) == 1.0
    scores = metrics.segmentation_scores(probs, truths, "per_case")
    assert scores["iou"] == pytest.approx(float(ref_iou.double().mean()), abs=1e-6)
    assert scores["dice"] == pytest.approx(float(ref_dice.double().mean()), abs=1e-6)
    torch.testing.assert_close(metrics.iou_per_case(prob_t, truth_t), ref_iou.double())
