"""PEAC: patch embedding of anatomical consistency (Zhou et al., BMVC 2023), on chest radiographs.

Per batch of whole radiographs (``(B, 1, S, S)``, ``S = (k + m + 1) * g``; 608 px in the paper):

1. two grid-aligned views per image (:class:`~semantic_genesis.transforms.grid_views.GridViewSampler`:
   shared sub-cell jitter, cell offsets ``0 .. m``) and the masks of their shared cells
   (:func:`~semantic_genesis.transforms.grid_views.overlap_masks`, rows from the row offsets;
   ``legacy_transposed_masks`` reproduces the official ``get_index``);
2. POPAR on view 1 (:func:`~semantic_genesis.transforms.popar.popar_corrupt`): per sample, shuffled
   cells (order prediction) or the Models Genesis appearance transforms of ``transforms`` (preset
   ``models_genesis`` without flips, local shuffling always: set in the presets); view 2 stays clean;
3. the student (:class:`~semantic_genesis.models.peac.PEACModel` on the configured backbone, e.g.
   ``swin2d``) embeds ``cat[view 1, view 2]`` in one pass and the EMA teacher the same batch without
   gradients (the official ``global_local_popar_swin_ddp.py`` also batches the views);
4. :func:`~semantic_genesis.losses.peac.peac_loss`: order CE + restoration MSE + 1e5 x symmetric global
   MSE of L2-normalised embeddings + local MSE of matched tokens of the un-shuffled samples.
   The step also logs the order accuracy and the collapse monitor ``global_spread`` / ``token_spread``
   (:func:`~semantic_genesis.losses.peac.embedding_spread` of the student's global embeddings and
   tokens: near 0 when every radiograph and cell get the same embedding, which the consistency terms,
   having no predictor, allow).

After every optimiser step (:meth:`PEAC.after_step`) the teacher moves towards the student with the
momentum of the DINO cosine schedule 0.999 -> 1 over the run's steps (official ``TEACHER_M`` and
``cosine_scheduler``); it runs in eval mode (the official code's teacher runs with drop-path until its
first validation, which we do not reproduce) and is saved in every checkpoint, so a resumed run
continues with the same teacher. The weights files hold the student's backbone
(``method.options.export: teacher`` for the teacher's), loadable by ``finetune`` like any backbone.

The optimiser and schedule come from the ``optim`` section: the presets use SGD (lr 0.1, momentum
0.9, no weight decay) with a linear warm-up and a cosine decay stepped per optimiser step; the
official code steps the same warm-up + cosine once per epoch (5 warm-up epochs of 400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError, DataError
from semantic_genesis.methods import register
from semantic_genesis.methods.base import Method, StepContext, StepOutput
from semantic_genesis.methods.options import MethodOptions, check_non_negative, parse_options


@dataclass(frozen=True)
class PEACOptions(MethodOptions):
    """``method.options`` of ``peac`` (defaults: the paper; the official names in brackets).

    Attributes:
        cell: grid cell ``g`` in pixels = the backbone's total stride (PATCH_SIZE 32).
        crop_cells: view size ``k`` in cells (14: 448-px views).
        max_offset: largest cell offset ``m`` of a view (4).
        jitter: shared sub-cell pixel jitter (``GridRandomCrop``).
        shuffle_prob: probability of the order branch of POPAR per sample (0.5).
        global_widths: global projector widths after the backbone's channels (MLP 8192-8192-8192).
        local_widths: local projector widths (MLPLOCAL 512-512-512).
        order_weight, restoration_weight, global_weight, local_weight: loss weights (1, 1, 1e5, 1).
        teacher_momentum: first value of the momentum schedule, which rises to 1 (TEACHER_M 0.999).
        legacy_transposed_masks: the official ``get_index`` masks (rows from the column offsets).
        export: the network whose backbone the weights files hold: ``student`` (what the official
            fine-tuning code loads) or ``teacher``.
        val_fraction: share of the patients held out for validation (folders without official lists).
    """

    cell: int = 32
    crop_cells: int = 14
    max_offset: int = 4
    jitter: bool = True
    shuffle_prob: float = 0.5
    global_widths: tuple[int, ...] = (8192, 8192, 8192)
    local_widths: tuple[int, ...] = (512, 512, 512)
    order_weight: float = 1.0
    restoration_weight: float = 1.0
    global_weight: float = 1e5
    local_weight: float = 1.0
    teacher_momentum: float = 0.999
    legacy_transposed_masks: bool = False
    export: Literal["student", "teacher"] = "student"
    val_fraction: float = 0.05

    def __post_init__(self) -> None:
        check_non_negative(self, "order_weight", "restoration_weight", "global_weight", "local_weight")
        if not 0.0 <= self.shuffle_prob <= 1.0:
            raise ConfigError(f"shuffle_prob must be in [0, 1], got {self.shuffle_prob}")
        if not 0.0 <= self.teacher_momentum <= 1.0:
            raise ConfigError(f"teacher_momentum must be in [0, 1], got {self.teacher_momentum}")


def _first(output, n: int):
    return type(output)(*(t[:n] for t in output))


def _last(output, n: int):
    return type(output)(*(t[n:] for t in output))


@register()
class PEAC(Method):
    """PEAC pretraining: POPAR + global and local consistency with an EMA teacher (see module doc)."""

    name = "peac"
    description = "PEAC: grid-matched views, POPAR and global/local consistency with an EMA teacher (2D, Swin)"
    options_class = PEACOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options: PEACOptions = parse_options(cfg, PEACOptions, self.name)
        from semantic_genesis.losses.peac import PEACLossWeights
        from semantic_genesis.transforms.grid_views import GridViewSampler

        o = self.options
        self.sampler = GridViewSampler(o.cell, o.crop_cells, o.max_offset, jitter=o.jitter)
        self.weights = PEACLossWeights(o.order_weight, o.restoration_weight, o.global_weight, o.local_weight)
        self.teacher: nn.Module | None = None
        self._appearance = None
        self._momentum: tuple[int, torch.Tensor] | None = None

    # -- network and data ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from semantic_genesis.models.backbone import backbone_from_config
        from semantic_genesis.models.peac import PEACModel
        from semantic_genesis.models.ema import make_teacher

        o = self.options
        backbone = backbone_from_config(self.cfg.model, who="peac")
        model = PEACModel(backbone, o.cell, o.crop_cells, o.global_widths, o.local_widths)
        self.teacher = make_teacher(model)
        return model

    def build_datasets(self):
        from semantic_genesis.io.radiograph_folder import RadiographImages, radiograph_splits

        if not self.cfg.data:
            raise ConfigError("peac needs radiographs: data=FOLDER (PNG/JPEG/DICOM images, e.g. from "
                              "`semantic-genesis phantom xray`, or a ChestX-ray14 folder)")
        paths, patients, rule = radiograph_splits(self.cfg.data, self.options.val_fraction, self.cfg.seed)
        if not paths["train"]:
            raise DataError(f"{self.cfg.data}: no training radiographs after the split ({rule})")
        size = self.sampler.image_size
        make = lambda part: RadiographImages(paths[part], patients[part], size, str(self.cfg.data), rule)  # noqa: E731
        return make("train"), (make("validation") if paths["validation"] else None)

    @property
    def appearance(self):
        """The POPAR appearance transforms: ``transforms.preset`` with ``transforms.overrides`` (2D)."""
        if self._appearance is None:
            from semantic_genesis.transforms import build_preset

            self._appearance = build_preset(self.cfg.transforms.preset, spatial_dims=2,
                                            **dict(self.cfg.transforms.overrides))
        return self._appearance

    # -- the step ---------------------------------------------------------------------------------
    def _teacher_on(self, device: torch.device) -> nn.Module:
        if self.teacher is None:
            raise ConfigError("peac: the teacher is built with the model (build_model was not called)")
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        return self.teacher

    def _images(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["image"]
        channels = self.cfg.model.in_channels
        if images.shape[1] == 1 and channels > 1:  # grey radiographs for a 3-channel network (official)
            images = images.expand(-1, channels, -1, -1)
        return images

    def _forward(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext):
        from semantic_genesis.losses.peac import peac_loss
        from semantic_genesis.transforms.grid_views import overlap_masks
        from semantic_genesis.transforms.popar import popar_corrupt

        o = self.options
        views = self.sampler(self._images(batch), ctx.generator)
        with torch.autocast(device_type=views.view1.device.type, enabled=False):
            popar = popar_corrupt(views.view1.float(), o.cell, self.appearance, ctx.generator, o.shuffle_prob)
        mask1, mask2 = overlap_masks(views.offsets1, views.offsets2, o.crop_cells, o.legacy_transposed_masks)
        n = views.view1.shape[0]
        both = torch.cat([popar.input, views.view2.to(popar.input.dtype)])
        student = model(both)
        teacher = self._teacher_on(both.device)
        with torch.no_grad():
            target = teacher(both)
        terms = peac_loss(_first(student, n), _last(student, n), _first(target, n), _last(target, n), popar.perm,
                          popar.target, mask1.to(both.device), mask2.to(both.device), popar.shuffled, self.weights)
        return terms, popar, student

    def training_step(self, model, batch, ctx) -> StepOutput:
        terms, _, _ = self._forward(model, batch, ctx)
        metrics = {k: float(v.detach()) for k, v in terms.items() if k != "loss"}
        return StepOutput(terms["loss"], metrics)

    def example_batch(self, model, batch, ctx) -> dict[str, torch.Tensor]:
        _, popar, student = self._forward(model, batch, ctx)
        n = popar.input.shape[0]
        return {"input": popar.input.detach(), "output": student.restoration[:n].detach().float().clamp(0, 1),
                "target": popar.target.detach()}

    # -- the teacher --------------------------------------------------------------------------------
    def momentum(self, step: int, total_steps: int) -> float:
        """The teacher momentum after optimiser step ``step`` of ``total_steps``: the DINO cosine
        schedule from ``teacher_momentum`` to 1 (one value per step)."""
        from semantic_genesis.models.ema import cosine_schedule

        total = max(int(total_steps), 1)
        if self._momentum is None or self._momentum[0] != total:
            self._momentum = (total, cosine_schedule(self.options.teacher_momentum, 1.0, 1, total))
        schedule = self._momentum[1]
        return float(schedule[min(max(int(step), 0), total - 1)])

    def after_step(self, model: nn.Module, ctx: StepContext) -> None:
        from semantic_genesis.models.registry import unwrap_model
        from semantic_genesis.models.ema import ema_update

        student = unwrap_model(model)
        ema_update(student, self._teacher_on(next(student.parameters()).device), self.momentum(ctx.step, ctx.total_steps))

    def state_dict(self) -> dict[str, Any]:
        from semantic_genesis.models.ema import teacher_state

        if self.teacher is None:
            raise ConfigError("peac: the teacher is built with the model (build_model was not called)")
        return {"teacher": teacher_state(self.teacher)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from semantic_genesis.models.ema import load_teacher_state

        if "teacher" not in state:
            raise CheckpointError("the checkpoint holds no PEAC teacher (method state without 'teacher')")
        load_teacher_state(self.teacher, state["teacher"])

    # -- export -------------------------------------------------------------------------------------
    def export_module(self, model: nn.Module) -> nn.Module:
        from semantic_genesis.models.registry import unwrap_model

        source = self.teacher if self.options.export == "teacher" else unwrap_model(model)
        return source.backbone

    def weights_metadata(self) -> dict[str, Any]:
        o = self.options
        return {
            "method": self.name,
            "network": o.export,
            "input_size": [self.sampler.view_size, self.sampler.view_size],
            "grid_cell": o.cell,
            "options": self.options.as_dict(),
        }
