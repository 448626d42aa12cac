"""The Semantic Genesis self-classification loss: cross-entropy on logits, in float32."""

import pytest
import torch

from semantic_genesis.losses import classification_loss


def test_cross_entropy_on_logits():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    expected = -(torch.log_softmax(logits.detach(), 1)[[0, 1], [0, 2]]).mean()
    loss = classification_loss(logits, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[0, 0] < 0 and logits.grad[1, 2] < 0 and logits.grad[1, 1] > 0  # right class up, wrong down


def test_float32_under_autocast_and_stable_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4]]).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = classification_loss(logits, torch.tensor([0, 1]))
    assert loss.dtype == torch.float32 and loss.item() == 0.0  # log of a softmax would give -inf * 0 = nan
