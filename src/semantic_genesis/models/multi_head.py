"""Ark's network: one shared backbone and projector, one classification head per dataset.

Ark (Ma, Pang, Gotway, Liang; MICCAI 2023) and Ark+ learn one foundation model from several chest
X-ray datasets whose labels differ in number, meaning and type. The official ``ArkSwinTransformer``
(``models.py`` of the official Ark code) is a Swin transformer whose pooled feature goes through a
*projector* (``Linear(C, P)``, ``P = 1376`` by default, the embedding size of Google's CXR foundation
model; ``use_mlp``: ``Linear-ReLU-Linear``) into ``omni_heads``, one ``Linear(P, n_i)`` per dataset.
A batch of dataset ``i`` is scored only by head ``i``, so each head sees only its own labels while
the backbone and projector are shared.

:class:`MultiHeadModel` is that network on any backbone of this package
(:class:`~semantic_genesis.models.backbone.Backbone`: ``swin2d``, ``resunet2d``, ``unet2d``, ...):
the backbone's bottleneck averaged over its positions (``(B, C)``) is the pooled feature. The
backbone's encoder keeps its own state-dict keys (a :class:`~semantic_genesis.models.backbone.
BackboneWrapper`), so a weights file of this network transfers to the DXC / PXS fine-tuning networks
through the usual load path (:func:`semantic_genesis.models.loading.read_pretrained`): the encoder
tensors are copied, ``projector.*`` and ``omni_heads.*`` are reported as unused (the official
fine-tuning code drops them the same way with ``strict=False``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.models.backbone import BackboneWrapper, build_backbone
from semantic_genesis.models.registry import architecture_of

#: The projector width of the official Ark code (``--projector_features 1376``).
ARK_PROJECTOR_FEATURES = 1376


class MultiHeadModel(BackboneWrapper):
    """Backbone -> pooled feature -> projector -> one head per dataset.

    Args:
        backbone: a backbone module, or the registry name of one (built with ``backbone_args``).
        num_classes: outputs of each head, in dataset order (e.g. ``[14, 3, 1]``); a 0 gives an
            identity head (as in the official code).
        proj_dim: projector output ``P``; 0 = no projector (the heads sit on the pooled feature).
        use_mlp: projector ``Linear(C, P) -> ReLU -> Linear(P, P)`` instead of ``Linear(C, P)``.
        backbone_args: constructor arguments when ``backbone`` is a name.

    Shapes: input ``(B, in_channels, H, W)`` with ``H, W`` multiples of ``min_divisor``; projection
    ``(B, P)`` (unnormalised); head ``i`` logits ``(B, num_classes[i])``.
    """

    ARCH_NAME = "multi_head"

    def __init__(
        self,
        backbone: nn.Module | str = "unet2d",
        num_classes: Sequence[int] = (1,),
        proj_dim: int = ARK_PROJECTOR_FEATURES,
        use_mlp: bool = False,
        backbone_args: Mapping[str, Any] | None = None,
    ):
        backbone = build_backbone(backbone, backbone_args)
        super().__init__(backbone)
        counts = [int(n) for n in num_classes]
        if not counts or any(n < 0 for n in counts):
            raise ConfigError(f"multi_head: num_classes must list one non-negative count per dataset, got {list(num_classes)}")
        if proj_dim < 0:
            raise ConfigError(f"multi_head: proj_dim must be >= 0, got {proj_dim}")
        channels = self.bottleneck_channels
        width = int(proj_dim) or channels
        if proj_dim == 0:
            self.projector: nn.Module = nn.Identity()
        elif use_mlp:
            self.projector = nn.Sequential(nn.Linear(channels, width), nn.ReLU(inplace=True), nn.Linear(width, width))
        else:
            self.projector = nn.Linear(channels, width)
        self.omni_heads = nn.ModuleList(nn.Linear(width, n) if n > 0 else nn.Identity() for n in counts)
        self.num_classes = tuple(counts)
        self.proj_dim = int(proj_dim)
        self.embed_dim = width
        self.use_mlp = bool(use_mlp)

    @property
    def arch_args(self) -> dict[str, Any]:
        """Constructor arguments for the registry (the backbone by registry name and arguments)."""
        name, args = architecture_of(self.backbone)
        return {"backbone": name, "backbone_args": args, "num_classes": list(self.num_classes),
                "proj_dim": self.proj_dim, "use_mlp": self.use_mlp}

    @property
    def num_heads(self) -> int:
        return len(self.omni_heads)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled feature ``(B, C)`` (bottleneck averaged over its positions)."""
        self.check_input(x)
        return self.encode(x).pooled()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The projected embedding ``(B, P)`` (official ``generate_embeddings``; linear probing)."""
        return self.projector(self.features(x))

    def head_index(self, head: int) -> int:
        """``head`` checked against the number of heads (a :class:`DataError` otherwise)."""
        if isinstance(head, torch.Tensor):
            head = int(head)
        if not 0 <= int(head) < self.num_heads:
            raise DataError(f"multi_head: head {head} does not exist; the network has {self.num_heads} heads (0..{self.num_heads - 1})")
        return int(head)

    def forward(self, x: torch.Tensor, head: int | None = None):
        """``head`` given: ``(projection (B, P), logits of head (B, n_head))``; else the list of every
        head's logits (the official ``forward(x)`` used for zero-shot scoring)."""
        projection = self.embed(x)
        if head is None:
            return [h(projection) for h in self.omni_heads]
        return projection, self.omni_heads[self.head_index(head)](projection)
