"""Which loss fine-tunes which task."""

import pytest
import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.finetune.losses import build_loss
from semantic_genesis.losses import bce_loss, soft_dice_loss


def test_build_loss_choices():
    logits, target = torch.zeros(2, 1, 8, 8, 8), torch.ones(2, 1, 8, 8, 8)
    combo = build_loss("auto", "segmentation")(logits, target)
    assert float(combo) == pytest.approx(float(soft_dice_loss(logits, target) + bce_loss(logits, target)))
    with pytest.raises(ConfigError, match="segmentation loss"):
        build_loss("dice", "classification")
    with pytest.raises(ConfigError, match="not one of"):
        build_loss("focal", "segmentation")
