"""The self-restoration MSE: float32 under autocast, on probabilities or logits."""

import torch

from semantic_genesis.losses import restoration_loss


def test_loss_is_float32_mse_under_autocast():
    out = torch.rand(2, 1, 8, 8, 8).to(torch.bfloat16)
    target = torch.rand(2, 1, 8, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = restoration_loss(out, target)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, ((out.float() - target) ** 2).mean())
    logits = torch.randn(2, 1, 8, 8, 8)
    assert torch.allclose(restoration_loss(logits, target, "none"), ((torch.sigmoid(logits) - target) ** 2).mean())


def test_restoration_loss_gradient_reaches_the_output():
    out = torch.full((1, 1, 4, 4, 4), 0.25, requires_grad=True)
    target = torch.ones(1, 1, 4, 4, 4)
    restoration_loss(out, target).backward()
    assert torch.allclose(out.grad, torch.full_like(out, 2 * (0.25 - 1) / 64))
