"""Target tasks, registered by name (Semantic Genesis, Table 1; Models Genesis).

========  ============================================  ================  ====================
name      task                                          data layout       metric(s)
========  ============================================  ================  ====================
``ncc``   lung nodule false-positive reduction (cls)    LUNA16            AUC
``ncs``   lung nodule segmentation (crops)              native phantom,   IoU, Dice
                                                        or x_/m_ npy
``lcs``   liver segmentation (whole volumes)            LiTS              IoU, Dice
``bms``   brain tumour (whole tumour) segmentation      BraTS (FLAIR)     IoU, Dice
``dxc``   14 thoracic diseases on radiographs (2D,      ChestX-ray14      mean AUC, AUC per
          multi-label classification)                                     label
``pxs``   pneumothorax segmentation on radiographs      SIIM-ACR          IoU, Dice (pooled or
          (2D, empty masks included)                                      per image)
``ncc2d`` NCC by a 2D network on axial slices, slice      as ``ncc``        AUC (per candidate)
          probabilities averaged per candidate
``ncs2d`` NCS by a 2D network on axial slices, stacked    as ``ncs``        IoU, Dice (3D masks)
          into the 3D mask
========  ============================================  ================  ====================

``ncc2d`` and ``ncs2d`` are the 2D slice-based solutions of Semantic Genesis Fig. 3: they share the
data, split and test units of their 3D task (:mod:`~semantic_genesis.finetune.tasks.slices`).

``get(name)`` returns the task object; ``available()`` lists the names; ``register(task)`` adds one.
"""

from __future__ import annotations

from semantic_genesis.finetune.tasks.base import Task
from semantic_genesis.finetune.tasks.bms import BMS
from semantic_genesis.finetune.tasks.dxc import DXC
from semantic_genesis.finetune.tasks.lcs import LCS
from semantic_genesis.finetune.tasks.ncc import NCC
from semantic_genesis.finetune.tasks.ncc2d import NCC2D
from semantic_genesis.finetune.tasks.ncs import NCS
from semantic_genesis.finetune.tasks.ncs2d import NCS2D
from semantic_genesis.finetune.tasks.pxs import PXS
from semantic_genesis.utils.registry import Registry

#: The task registry (name -> :class:`Task` instance).
TASKS: Registry[Task] = Registry("target task", key="finetune.task")


def register(task: Task) -> Task:
    """Add ``task`` (an instance with a unique :attr:`Task.name`) to the registry and return it."""
    return TASKS.add(task.name, task, replace=True)


def available() -> list[str]:
    """Names of the registered tasks, sorted."""
    return TASKS.available()


def get(name: str) -> Task:
    """The task called ``name``; unknown names raise :class:`ConfigError` listing the available ones."""
    return TASKS.get(name)


for _task in (NCC(), NCS(), LCS(), BMS(), DXC(), PXS(), NCC2D(), NCS2D()):
    register(_task)

__all__ = ["TASKS", "Task", "available", "get", "register"]
