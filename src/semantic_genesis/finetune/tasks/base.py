"""The :class:`Task` base class: how a target task reads its dataset and how it is scored."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np

from semantic_genesis.errors import ConfigError, DatasetLayoutError, describe_path

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData
    from semantic_genesis.methods.finetune import SliceInference


class Task:
    """A target task of the papers (Semantic Genesis Table 1; Models Genesis).

    Class attributes:
        name: registry name (``ncc``, ``ncs``, ``lcs``, ``bms``).
        kind: ``"classification"`` or ``"segmentation"``.
        metric: the paper's metric for the task (selects the best epoch and is compared in trials).
        metrics: every metric reported on the test set (the first is :attr:`metric`).
        description: one line.
        layout: the expected dataset layout, quoted in errors.
        num_outputs: outputs of the new head / output layer (1 = binary, sigmoid).
        label_names: multi-label classification tasks: the name of every output (one sigmoid and one
            AUC per label); empty for single-output tasks.
        spatial_dims: 3 for volumes ``(C, X, Y, Z)``, 2 for images ``(C, H, W)``; the network's
            backbone must have the same.
        slices_of: a 2D slice-based task (:mod:`~semantic_genesis.finetune.tasks.slices`): the 3D task
            whose data, split and test units it shares (``ncc2d`` -> ``ncc``); ``""`` for the others.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "classification"
    metric: ClassVar[str] = "auc"
    metrics: ClassVar[tuple[str, ...]] = ("auc",)
    description: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    num_outputs: ClassVar[int] = 1
    label_names: ClassVar[tuple[str, ...]] = ()
    spatial_dims: ClassVar[int] = 3
    slices_of: ClassVar[str] = ""

    @property
    def multilabel(self) -> bool:
        """Whether the task is multi-label classification (targets ``(C,)`` 0/1, one AUC per label)."""
        return bool(self.label_names)

    def load(self, root: str | Path, cfg: "Config") -> "TaskData":
        """Read the task's samples from ``root`` (crops in [0, 1], see :class:`TaskData`)."""
        raise DatasetLayoutError(f"task {self.name} defines no loader")  # pragma: no cover

    def slice_inference(self, cfg: "Config") -> "SliceInference | None":
        """How a 2D network trains on and predicts this task's volumes slice by slice; ``None`` (the
        network takes the samples as they are) except for slice-based tasks."""
        return None

    @staticmethod
    def image_size_2d(cfg: "Config") -> tuple[int, int]:
        """``finetune.image_size`` of a 2D task as ``(H, W)``; :class:`ConfigError` unless two positive sizes."""
        size = tuple(int(s) for s in cfg.finetune.image_size)
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"finetune.image_size must be [H, W] with positive sizes, got {list(cfg.finetune.image_size)}")
        return size

    def check_root(self, root: str | Path) -> Path:
        """Return ``root`` as a Path if it is a folder, else a :class:`DatasetLayoutError` with the layout."""
        root = Path(root)
        if not root.is_dir():
            raise DatasetLayoutError(
                f"{describe_path(root)}: data folder of task {self.name} not found; expected {self.layout}"
            )
        return root


def official_split_indices(
    cfg: "Config", layout: str, patients: Sequence[tuple[str, str | Path]], sample_patients: Sequence[str],
) -> tuple[dict[str, np.ndarray] | None, str]:
    """The sample indices of the official split when ``finetune.split`` asks for it (``auto`` / ``official``).

    Args:
        cfg: root config (``finetune.split``).
        layout: the dataset layout (``luna16``, ``lits``, ``brats``).
        patients: ``(patient id, path)`` of every patient with samples.
        sample_patients: the patient of every sample.

    Returns:
        ``({"train", "val", "test"} -> int64 sample indices, description)``, or ``(None, description)``
        when the rule resolves to a random split (drawn later by
        :func:`semantic_genesis.finetune.data.split_by_patient`). Samples of patients the official split
        does not use are in no split.
    """
    from semantic_genesis.io.datasets.splits import choose_split

    choice = choose_split(cfg.finetune.split, layout, patients, needs=("train", "validation", "test"),
                          key="finetune.split")
    if choice.rule != "official":
        return None, choice.description
    names = {"train": "train", "validation": "val", "test": "test"}
    index: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, pid in enumerate(sample_patients):
        where = choice.assignment.get(pid)
        if where is not None:
            index[names[where]].append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in index.items()}, choice.description
