"""NCS2D: the 2D slice-based solution of NCS (lung nodule segmentation, IoU / Dice).

Semantic Genesis (Haghighi et al., MICCAI 2020) Fig. 3 compares the 3D models of NCS with 2D models
trained on axial slices. This task reads exactly the data of :class:`~semantic_genesis.finetune.tasks.ncs.NCS`
(native phantom layout or the official ``x_*/m_*`` arrays, crops of ``finetune.crop_size``, the same
split), so its test crops are those of ``ncs`` (:mod:`~semantic_genesis.finetune.tasks.slices`).

A 2D U-Net is trained on the axial slices of every crop with the slice of its mask
(``finetune.options.slices``, default ``all``: slices without nodule teach the network to predict
nothing there, which the 3D IoU counts). At prediction every slice of a crop is segmented and the
slice logits are stacked along Z into the crop's 3D mask, scored with the IoU / Dice of ``ncs``
(``finetune.iou``) against the 3D ground truth.
"""

from __future__ import annotations

from semantic_genesis.finetune.tasks.ncs import NCS
from semantic_genesis.finetune.tasks.slices import SliceBased


class NCS2D(SliceBased, NCS):
    name = "ncs2d"
    description = "2D slice-based NCS: axial slices of the nodule crops, stacked into the 3D mask (IoU / Dice)"
    slices_of = "ncs"
    default_slices = "all"
