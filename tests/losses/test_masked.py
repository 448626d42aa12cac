"""The masked in-painting loss weighs the dropped region (0.99) over the context (0.01)."""

import pytest
import torch

from semantic_genesis.losses import masked_mse


def test_inpainting_loss_weighs_the_masked_region():
    target = torch.zeros(1, 1, 4, 4, 4)
    mask = torch.zeros(1, 1, 4, 4, 4, dtype=torch.bool)
    mask[..., :2] = True  # half the voxels
    out_err_inside = target.masked_fill(mask, 1.0)
    out_err_outside = target.masked_fill(~mask, 1.0)
    assert masked_mse(out_err_inside, target, mask, 0.99, 0.01).item() == pytest.approx(0.99)
    assert masked_mse(out_err_outside, target, mask, 0.99, 0.01).item() == pytest.approx(0.01)
    assert masked_mse(out_err_inside, target, mask, 1, 1).item() == pytest.approx(0.5)  # plain MSE
    assert masked_mse(out_err_outside, target, mask, 1, 0).item() == 0.0  # the dropped region only


def test_masked_loss_is_float32_and_broadcasts_the_mask_over_channels():
    g = torch.Generator().manual_seed(0)
    out = torch.rand(2, 3, 4, 4, 2, generator=g).to(torch.bfloat16)
    target = torch.rand(2, 3, 4, 4, 2, generator=g)
    mask = torch.rand(2, 1, 4, 4, 2, generator=g) > 0.5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = masked_mse(out, target, mask, 0.99, 0.01)
    w = torch.where(mask, 0.99, 0.01).expand_as(target)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(float((w * (out.float() - target) ** 2).sum() / w.sum()), rel=1e-6)
