"""The Rubik's cube heads' loss: permutation CE + weighted rotation BCE."""

import pytest
import torch
import torch.nn.functional as F

from semantic_genesis.losses import rubik_loss


def test_rubik_loss_terms_and_weight():
    g = torch.Generator().manual_seed(0)
    perm_logits = torch.randn(4, 10, generator=g, requires_grad=True)
    rot_logits = torch.randn(4, 8, generator=g, requires_grad=True)
    perm = torch.tensor([0, 3, 9, 3])
    rot = (torch.rand(4, 8, generator=g) > 0.5).float()
    loss = rubik_loss(perm_logits, rot_logits, perm, rot, rotation_weight=0.5)
    ce = -torch.log_softmax(perm_logits.detach(), 1)[torch.arange(4), perm].mean()
    p = torch.sigmoid(rot_logits.detach())
    bce = -(rot * p.log() + (1 - rot) * (1 - p).log()).mean()
    assert loss.ce.item() == pytest.approx(ce.item(), rel=1e-5) and loss.bce.item() == pytest.approx(bce.item(), rel=1e-5)
    assert loss.total.item() == pytest.approx(ce.item() + 0.5 * bce.item(), rel=1e-5)
    loss.total.backward()
    assert perm_logits.grad.abs().sum() > 0 and rot_logits.grad.abs().sum() > 0
    only_perm = rubik_loss(perm_logits, rot_logits, perm, rot, rotation_weight=0.0)
    assert only_perm.total.item() == pytest.approx(only_perm.ce.item())
    assert torch.equal(only_perm.bce, F.binary_cross_entropy_with_logits(rot_logits.float(), rot))
