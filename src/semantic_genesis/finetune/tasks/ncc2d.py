"""NCC2D: the 2D slice-based solution of NCC (LUNA16 false-positive reduction, AUC).

Semantic Genesis (Haghighi et al., MICCAI 2020) Fig. 3 compares the 3D models of NCC with 2D models
trained on axial slices. This task reads exactly the data of :class:`~semantic_genesis.finetune.tasks.ncc.NCC`
(the same LUNA16 reader, candidate crops of ``finetune.crop_size``, negatives per scan and split by
LUNA16 subset or by patient), so its test candidates are those of ``ncc``
(:mod:`~semantic_genesis.finetune.tasks.slices`).

Slices (``finetune.options.slices``, default ``3``): the **central** axial slices of each candidate
crop, each labelled with the candidate's label. A candidate cube is 32 slices deep (0.6-2.5 mm each),
while a LUNA16 nodule is 3-30 mm across: the slices through the candidate centre show it, the outer
slices of the cube mostly do not, so labelling them "nodule" would train the network on label noise.
``all`` uses every slice. A candidate's score is the **mean** of its slices' probabilities
(``finetune.options.aggregate: max`` takes the maximum); the AUC is computed over candidates, as for
``ncc``. The network: a 2D backbone's encoder with the classification head of ``ncc``
(``finetune.head``), from scratch (``model.name=unet2d`` / ``resunet2d``) or from 2D weights.
"""

from __future__ import annotations

from semantic_genesis.finetune.tasks.ncc import NCC
from semantic_genesis.finetune.tasks.slices import SliceBased


class NCC2D(SliceBased, NCC):
    name = "ncc2d"
    description = ("2D slice-based NCC: axial slices of the LUNA16 candidate crops, slice probabilities "
                   "averaged per candidate (AUC)")
    slices_of = "ncc"
    default_slices = 3
