"""Models Genesis: learn by restoring transformed sub-volumes (Zhou et al., MICCAI 2019 / MedIA 2021).

The network (the official 3D U-Net, :class:`semantic_genesis.models.UNet3D`) receives a cube
transformed by the ``"models_genesis"`` preset (flip, local pixel shuffling, non-linear intensity,
in-/out-painting, as composed by ``generate_pair`` in the official ``pytorch/utils.py``) and must
output the untransformed cube. The loss is the mean squared error between the sigmoid output and the
target (the training loss of the official ``pytorch/Genesis_Chest_CT.py``;
:func:`semantic_genesis.losses.restoration.restoration_loss`), computed in float32 even when the
forward pass runs under bf16/fp16 autocast.

Data: a cube set written by ``semantic-genesis cubes`` (``data=`` folder), splits ``train`` and
``validation`` (the latter optional).

**2D** (Models Genesis 2D): a 2D patch set (``cubes.cube_size: [H, W]``, items ``(1, H, W)``) and a 2D
network, ``model.name`` ``resunet2d`` (the ResNet-18 U-Net of the released 2D weights) or ``unet2d``;
the preset transforms ``(B, C, H, W)`` batches the same way (presets ``models_genesis_2d``,
``models_genesis_2d_tiny``). The set's dimensionality must match the network's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.losses import restoration_loss
from semantic_genesis.methods import register
from semantic_genesis.methods.base import Method, StepContext, StepOutput
from semantic_genesis.methods.options import MethodOptions, parse_options


@register()
class ModelsGenesis(Method):
    """Self-restoration with the Models Genesis transform preset and an MSE loss."""

    name = "models_genesis"
    description = "Models Genesis: restore cubes transformed by the models_genesis preset (MSE on the sigmoid output)"
    options_class: type[MethodOptions] = MethodOptions  # no method.options (the recipe is set in transforms)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = parse_options(cfg, self.options_class, self.name)
        self._preset = None
        self.item_shape: tuple[int, ...] | None = None  # (C, X, Y, Z) of the cube set, once loaded

    @property
    def preset(self):
        """The transform preset (built on first use from ``transforms.preset`` and its overrides)."""
        if self._preset is None:
            from semantic_genesis.transforms import build_preset

            self._preset = build_preset(self.cfg.transforms.preset, spatial_dims=self.spatial_dims,
                                        **dict(self.cfg.transforms.overrides))
        return self._preset

    @property
    def spatial_dims(self) -> int:
        """2 or 3: of the loaded set's items ``(C, *spatial)``, else of ``cubes.cube_size``."""
        return len(self.item_shape) - 1 if self.item_shape else len(self.cfg.cubes.cube_size)

    def build_model(self) -> nn.Module:
        from semantic_genesis.models import create_from_config

        m = self.cfg.model
        if m.out_channels != m.in_channels:
            raise ConfigError(
                f"models_genesis restores its input: model.out_channels ({m.out_channels}) must equal "
                f"model.in_channels ({m.in_channels})"
            )
        if m.out_activation not in ("sigmoid", "none"):
            raise ConfigError(f"models_genesis needs model.out_activation sigmoid or none, got {m.out_activation!r}")
        return create_from_config(m)

    def build_datasets(self):
        from semantic_genesis.io.shard_dataset import StoreDataset

        if not self.cfg.data:
            raise ConfigError("models_genesis needs a cube set: data=CUBES_DIR (made by `semantic-genesis cubes`)")
        train = StoreDataset(self.cfg.data, "train", kind="cubes", with_labels=False)
        if len(train) == 0:
            raise DataError(f"{self.cfg.data}: the cube set has no training cubes")
        if train.item_shape[0] != self.cfg.model.in_channels:
            raise ConfigError(
                f"{self.cfg.data}: cubes have {train.item_shape[0]} channel(s), model.in_channels is {self.cfg.model.in_channels}"
            )
        self._check_dimensions(train.item_shape)
        self.item_shape = train.item_shape
        val = StoreDataset(self.cfg.data, "validation", kind="cubes", with_labels=False)
        return train, (val if len(val) else None)

    def _check_dimensions(self, item_shape: tuple[int, ...]) -> None:
        """A 2D patch set needs a 2D network and a cube set a 3D one (one-line error otherwise)."""
        spatial = len(item_shape) - 1
        with torch.device("meta"):  # no memory, no computation, no random numbers drawn
            model_dims = getattr(self.build_model(), "spatial_dims", None)
        if model_dims is not None and model_dims != spatial:
            kind = "a 2D patch set" if spatial == 2 else "a 3D cube set"
            fits = "resunet2d or unet2d" if spatial == 2 else "unet3d"
            raise ConfigError(
                f"{self.cfg.data}: {kind} (items {tuple(item_shape)}) cannot train model.name="
                f"{self.cfg.model.name} ({model_dims}D); use model.name={fits}"
            )

    def prepare_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``{"input", "target"}``: the preset applied to the cubes ``batch["image"]``."""
        cubes = batch["image"]
        with torch.autocast(device_type=cubes.device.type, enabled=False):
            inputs, targets = self.preset(cubes, generator=generator)
        return {"input": inputs, "target": targets}

    def _restore(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext, keep: bool) -> StepOutput:
        pair = self.prepared(batch, ctx)
        inputs, targets = pair["input"], pair["target"]
        output = model(inputs)
        loss = restoration_loss(output, targets, self.cfg.model.out_activation)
        metrics: dict[str, float] = {}
        outputs: dict[str, torch.Tensor] = {}
        if not ctx.training:
            # the do-nothing baseline: how far the transformed input is from the target
            metrics["input_mse"] = float(F.mse_loss(inputs.float(), targets.float()))
        if keep:
            shown = output.float() if self.cfg.model.out_activation == "sigmoid" else torch.sigmoid(output.float())
            outputs = {"input": inputs.detach(), "output": shown.detach(), "target": targets.detach()}
        return StepOutput(loss, metrics, outputs)

    def training_step(self, model, batch, ctx) -> StepOutput:
        return self._restore(model, batch, ctx, keep=False)

    def validation_step(self, model, batch, ctx) -> StepOutput:
        return self._restore(model, batch, ctx, keep=False)

    def example_batch(self, model, batch, ctx) -> dict[str, torch.Tensor]:
        return self._restore(model, batch, ctx, keep=True).outputs

    def weights_metadata(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "transforms": self.cfg.transforms.preset,
            "input_size": list(self.item_shape[1:]) if self.item_shape else list(self.cfg.cubes.cube_size),
            "intensity": {
                "modality": self.cfg.intensity.modality,
                "hu_min": self.cfg.intensity.hu_min,
                "hu_max": self.cfg.intensity.hu_max,
                "lower_percentile": self.cfg.intensity.lower_percentile,
                "upper_percentile": self.cfg.intensity.upper_percentile,
            },
        }
