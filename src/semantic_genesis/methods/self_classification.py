"""Self-classification alone (the Semantic Genesis ablation "Self-classification", paper Table 2).

The encoder of the Models Genesis U-Net plus the Semantic Genesis head
(:class:`~semantic_genesis.models.EncoderClassifier3D` with ``head="genesis"``) classifies each
transformed pattern into its pseudo-label (cross-entropy on logits), like the official ``--exp en``
(``ClassificationNet3D``, reference §4.2). The weights hold the encoder (``down_tr*`` keys) and the
head; they load into fine-tuning models with ``load_pretrained(..., strict=False)``.
"""

from __future__ import annotations

from semantic_genesis.methods import register
from semantic_genesis.methods.semantic_genesis import SemanticAddon


@register()
class SelfClassification(SemanticAddon):
    """Classification of discovered patterns only: encoder + head, CE on the transformed pattern."""

    name = "self_classification"
    description = "ablation: classify transformed discovered patterns (encoder + head, cross-entropy)"
    restore = False
