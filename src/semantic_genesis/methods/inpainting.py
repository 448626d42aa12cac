"""In-painting baseline: context encoders (Pathak et al., CVPR 2016), extended to 3D.

Pathak, Krahenbuhl, Donahue, Darrell, Efros, "Context encoders: feature learning by inpainting",
CVPR 2016; the "In-painting" row of Semantic Genesis (Haghighi et al., MICCAI 2020) Table 2 and one of
its Fig. 2 pairs (see ``semantic_inpainting``). As in the Semantic Genesis comparison, the network is
the Models Genesis 3D U-Net; on a 2D patch set (items ``(1, H, W)``) a 2D network (``model.name``
``resunet2d`` or ``unet2d``) and the same boxes in 2D.

* Input: the cube ``(B, 1, X, Y, Z)`` in [0, 1] with one or more random boxes dropped
  (:mod:`semantic_genesis.transforms.context_mask`; ``transforms.overrides``: ``min_windows`` 1,
  ``max_windows`` 3, ``size_fraction`` (1/4, 1/2) of each side, ``margin`` 0, ``fill`` ``"mean"``
  (the sample mean, the paper's mean fill), ``"zero"`` or ``"noise"``).
* Target: the original cube; the mask ``M`` marks the dropped voxels.
* Loss: the masked reconstruction loss of the context encoder
  (:func:`semantic_genesis.losses.masked.masked_mse`), a weighted mean of squared errors of the
  sigmoid output, ``sum(w * (out - target)^2) / sum(w)`` with ``w = inside_weight`` (0.99) on dropped
  voxels and ``outside_weight`` (0.01) elsewhere (``method.options``, :class:`InpaintingOptions`), so
  the network is scored on what it fills in and only lightly on copying the context (Pathak et al.
  weighted the overlap with the context lightly in the same way). ``outside_weight=0`` scores the
  dropped region only; equal weights give the plain MSE.

**Not implemented:** the adversarial term of the original joint loss (0.999 L2 + 0.001 adversarial).
This baseline is the reconstruction-only context encoder; there is no discriminator.

Validation logs ``mse_inside`` and ``mse_outside`` (MSE on the dropped and kept voxels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.losses import masked_mse
from semantic_genesis.methods import register
from semantic_genesis.methods.base import StepContext, StepOutput
from semantic_genesis.methods.options import MethodOptions, check_non_negative
from semantic_genesis.methods.restoration import RestorationMethod
from semantic_genesis.transforms.context_mask import ContextInpaintRecipe

@dataclass(frozen=True)
class InpaintingOptions(MethodOptions):
    """``method.options`` of in-painting: the weights of the masked loss."""

    inside_weight: float = 0.99  # weight of the dropped voxels
    outside_weight: float = 0.01  # weight of the kept context (0: score the dropped region only)

    def __post_init__(self) -> None:
        check_non_negative(self, "inside_weight", "outside_weight")
        if self.inside_weight + self.outside_weight <= 0:
            raise ConfigError("method.options.inside_weight and outside_weight must not both be 0")


@register()
class Inpainting(RestorationMethod):
    """Context-encoder in-painting of random boxes; masked-region weighted L2, no adversarial term."""

    name = "inpainting"
    description = "in-painting baseline (Pathak et al. 2016, 3D): fill dropped boxes (U-Net, masked-weighted L2)"
    recipe_class = ContextInpaintRecipe
    options_class = InpaintingOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        self.inside_weight, self.outside_weight = self.options.inside_weight, self.options.outside_weight

    def prepare_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``{"input", "target", "mask"}``: the cubes with boxes dropped, the cubes, the dropped region."""
        cubes = batch["image"]
        with torch.autocast(device_type=cubes.device.type, enabled=False):
            inputs, targets, mask = self.preset.sample(cubes, generator=generator)
        return {"input": inputs, "target": targets, "mask": mask}

    def _restore(self, model, batch: dict[str, torch.Tensor], ctx: StepContext, keep: bool) -> StepOutput:
        pair = self.prepared(batch, ctx)
        inputs, targets, mask = pair["input"], pair["target"], pair["mask"]
        output = model(inputs)
        shown = output.float() if self.cfg.model.out_activation == "sigmoid" else torch.sigmoid(output.float())
        loss = masked_mse(shown, targets, mask, self.inside_weight, self.outside_weight)
        metrics: dict[str, float] = {}
        if not ctx.training:
            with torch.no_grad():  # always both keys (the engine averages a fixed key set); 0 for an empty region
                err = (shown.detach() - targets.float()) ** 2
                full = mask.expand_as(err).float()
                metrics["mse_inside"] = float((err * full).sum() / full.sum().clamp_min(1))
                metrics["mse_outside"] = float((err * (1 - full)).sum() / (1 - full).sum().clamp_min(1))
        outputs: dict[str, torch.Tensor] = {}
        if keep:
            outputs = {"input": inputs.detach(), "output": shown.detach(), "target": targets.detach(), "mask": mask}
        return StepOutput(loss, metrics, outputs)

    def weights_metadata(self) -> dict[str, Any]:
        meta = super().weights_metadata()
        meta.update(inside_weight=self.inside_weight, outside_weight=self.outside_weight, adversarial=False)
        return meta
