"""The fine-tuning losses: the official Models Genesis soft Dice (computed by MONAI DiceLoss), BCE with pos_weight, Dice + BCE."""

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from semantic_genesis.losses import bce_loss, dice_bce_loss, soft_dice_loss


def test_soft_dice_matches_official_formula_and_monai():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, 4, generator=g)
    target = (torch.rand(3, 1, 8, 8, 4, generator=g) > 0.7).float()
    p = torch.sigmoid(logits)
    official = 1 - (2 * (p * target).sum() + 1) / (target.sum() + p.sum() + 1)
    monai = DiceLoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)(logits, target)
    assert soft_dice_loss(logits, target) == pytest.approx(float(official), abs=1e-6)
    assert soft_dice_loss(logits, target) == pytest.approx(float(monai), abs=1e-6)
    # float64: MONAI's DiceLoss is the official formula exactly
    p64, t64 = torch.sigmoid(logits.double()), target.double()
    official64 = 1 - (2 * (p64 * t64).sum() + 1) / (t64.sum() + p64.sum() + 1)
    monai64 = DiceLoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)(logits.double(), t64)
    assert float(monai64) == float(official64)


def test_soft_dice_pools_channels_and_cases_and_gets_gradients():
    """Several channels and cases pool into one Dice, as the official flattened loss."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 6, 6, 4, generator=g, requires_grad=True)
    target = (torch.rand(2, 3, 6, 6, 4, generator=g) > 0.6).float()
    p = torch.sigmoid(logits.detach())
    official = 1 - (2 * (p * target).sum() + 1) / (target.sum() + p.sum() + 1)
    loss = soft_dice_loss(logits, target)
    assert loss.item() == pytest.approx(float(official), abs=1e-6)
    loss.backward()
    # more predicted foreground on a true voxel lowers the loss, on a background voxel raises it
    assert float(logits.grad[target.bool()].max()) < 0 and float(logits.grad[~target.bool()].min()) > 0
    empty = soft_dice_loss(torch.full((1, 1, 4, 4), -30.0), torch.zeros(1, 1, 4, 4))
    assert float(empty) == pytest.approx(0.0, abs=1e-6)  # both empty: smoothing gives Dice 1


def test_bce_pos_weight_and_gradients():
    logits = torch.tensor([[2.0], [-1.0], [0.5]], requires_grad=True)
    target = torch.tensor([[1.0], [0.0], [1.0]])
    expected = -(3 * target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()
    loss = bce_loss(logits, target, pos_weight=3.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[1, 0] > 0 and logits.grad[0, 0] < 0  # push negatives down, positives up


def test_dice_bce_is_the_sum():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 8, 8, 4, generator=g)
    target = (torch.rand(2, 1, 8, 8, 4, generator=g) > 0.5).float()
    assert float(dice_bce_loss(logits, target)) == pytest.approx(float(soft_dice_loss(logits, target) + bce_loss(logits, target)))
    perfect = target * 40 - 20  # confident and right: both terms near 0
    assert float(dice_bce_loss(perfect, target)) < 1e-3
