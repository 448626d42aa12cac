"""The 2D slice-based solutions of the 3D target tasks (Semantic Genesis, Haghighi et al., MICCAI 2020,
Fig. 3; Models Genesis, Zhou et al., MedIA 2021, "2D slice-based" vs "3D volume-based" approaches).

A slice-based task (``ncc2d``, ``ncs2d``) reads **the data of its 3D task** with the 3D task's own
reader and settings (:attr:`~semantic_genesis.finetune.tasks.base.Task.slices_of`): the same crops,
the same patients and the same split (random splits are drawn under the 3D task's name, official
splits are the same lists), so its test units are those of the 3D task. Only the network differs: a
2D network (``unet2d``, ``resunet2d``, or 2D pretrained weights) trained on **axial slices** (the last
axis of ``(C, X, Y, Z)`` crops), whose slice predictions are put back together on the 3D unit before
scoring (:class:`~semantic_genesis.methods.finetune.SliceInference`): the candidate's probability is
the mean (or maximum) of its slices' probabilities, the nodule mask is the stack of slice masks. AUC
and IoU are then computed by the same metric code on the same test crops as the 3D rows.

Which slices (``finetune.options.slices``): ``all`` or ``k``, the ``k`` central axial slices (the
crop's centre voxel is at index ``Z // 2``; ``k`` slices from ``Z // 2 - k // 2``, always inside the
crop). Training uses the chosen slices; classification aggregates them at prediction; segmentation always predicts
every slice (the 3D mask must be complete) and trains on the chosen ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from semantic_genesis.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData
    from semantic_genesis.methods.finetune import SliceInference


def central_slices(depth: int, count: int) -> tuple[int, ...]:
    """The ``count`` central indices of ``depth`` axial slices around the crop centre ``depth // 2``.

    Example: ``central_slices(8, 3) == (3, 4, 5)``, ``central_slices(8, 2) == (3, 4)``,
    ``central_slices(8, 8) == (0, ..., 7)``.
    """
    start = depth // 2 - count // 2
    return tuple(range(start, start + count))


def parse_slices(value: object, depth: int, key: str = "finetune.options.slices") -> tuple[int, ...]:
    """The slice indices that ``all`` or a count ``k`` (1 <= k <= depth) selects.

    Raises:
        ConfigError: anything else, naming ``key`` and the value.
    """
    if isinstance(value, str) and value.strip().lower() == "all":
        return tuple(range(depth))
    try:
        count = int(value)  # type: ignore[call-overload]
        if isinstance(value, bool) or count != float(value):  # type: ignore[arg-type]
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected 'all' or a number of central axial slices, got {value!r}") from None
    if not 1 <= count <= depth:
        raise ConfigError(f"{key}={count}: must be between 1 and the crop depth {depth} (finetune.crop_size)")
    return central_slices(depth, count)


class SliceBased:
    """Mix-in of a slice-based task: put it before the 3D task's class (``class NCC2D(SliceBased, NCC)``).

    Class attributes:
        default_slices: ``finetune.options.slices`` when not set (``"all"`` or a count).
    """

    spatial_dims: ClassVar[int] = 2
    default_slices: ClassVar[str | int] = "all"

    def load(self, root: str | Path, cfg: "Config") -> "TaskData":
        """The 3D task's samples (its reader, its split), re-labelled as this task's."""
        data = super().load(root, cfg)  # type: ignore[misc]
        data.task, data.split_task = self.name, self.slices_of  # type: ignore[attr-defined]
        spec = self.slice_inference(cfg)
        data.info = {**data.info, "slices": f"axial, {self._slice_text(spec, int(data.images.shape[-1]))}"}
        return data

    def slice_inference(self, cfg: "Config") -> "SliceInference":
        """The slices and aggregation of ``finetune.options`` (``slices``, ``aggregate``).

        Raises:
            ConfigError: a bad ``slices`` or ``aggregate`` value (one line naming the key).
        """
        from semantic_genesis.methods.finetune import SLICE_AGGREGATIONS, SliceInference

        options = cfg.finetune.options
        depth = int(cfg.finetune.crop_size[-1])
        slices = parse_slices(options.get("slices", self.default_slices), depth)
        aggregate = str(options.get("aggregate", "mean"))
        if aggregate not in SLICE_AGGREGATIONS:
            raise ConfigError(f"finetune.options.aggregate: expected one of {', '.join(SLICE_AGGREGATIONS)}, "
                              f"got {aggregate!r}")
        return SliceInference(slices=slices, aggregate=aggregate)

    def _slice_text(self, spec: "SliceInference", depth: int) -> str:
        chosen = "all" if len(spec.slices) == depth else f"central {len(spec.slices)}"
        if getattr(self, "kind", "") == "classification":
            return f"{chosen} of {depth} slices, slice probabilities aggregated by their {spec.aggregate}"
        return f"trained on {chosen} of {depth} slices, every slice predicted and stacked into the 3D mask"
