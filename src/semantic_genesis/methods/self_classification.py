"""Self-classification alone (the Semantic Genesis ablation "Self-classification", paper Table 2).

The encoder of the backbone (``model.name``, default the Models Genesis 3D U-Net) plus the Semantic
Genesis head (:class:`~semantic_genesis.models.classifier.EncoderClassifier` with ``head="genesis"``)
classifies each transformed pattern into its pseudo-label (cross-entropy on logits), like the official
``--exp en`` (``ClassificationNet3D``). The weights hold the encoder (``down_tr*`` keys) and the head;
they load into fine-tuning models with ``load_pretrained(..., strict=False)``.
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
