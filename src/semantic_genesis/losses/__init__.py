"""Stand-alone losses, one module each, usable in any training loop.

Every loss takes **logits** or probabilities as documented, computes in float32 (also under bf16/fp16
autocast) and returns a scalar tensor:

* :func:`~.restoration.restoration_loss`: the self-restoration MSE of Models Genesis (Zhou et al.,
  MedIA 2021) and Semantic Genesis (Haghighi et al., MICCAI 2020);
* :func:`~.masked.masked_mse`: the context-encoder in-painting loss, weighting the dropped region
  0.99 and the context 0.01 (Pathak et al., CVPR 2016);
* :func:`~.classification.classification_loss`: the Semantic Genesis self-classification
  cross-entropy on pattern logits;
* :func:`~.rubik.rubik_loss`: the Rubik's cube heads' loss, permutation CE + rotation BCE (Zhuang et
  al., MICCAI 2019);
* :func:`~.dice.soft_dice_loss`, :func:`~.dice.dice_bce_loss` and :func:`~.bce.bce_loss`: the
  segmentation and classification losses of fine-tuning (the official Models Genesis Dice).
"""

from semantic_genesis.losses.bce import bce_loss
from semantic_genesis.losses.classification import classification_loss
from semantic_genesis.losses.dice import dice_bce_loss, soft_dice_loss
from semantic_genesis.losses.masked import masked_mse
from semantic_genesis.losses.restoration import restoration_loss
from semantic_genesis.losses.rubik import RubikLoss, rubik_loss

__all__ = [
    "RubikLoss",
    "bce_loss",
    "classification_loss",
    "dice_bce_loss",
    "masked_mse",
    "restoration_loss",
    "rubik_loss",
    "soft_dice_loss",
]
