"""The embedded synthetic anatomy: phantom cohorts with consistent anatomy and ground truth.

* :mod:`~semantic_genesis.phantoms.ct` -- chest CT patients in HU (:func:`make_ct_patient`,
  :func:`make_ct_cohort`) with label maps, lung nodules and LUNA16-style candidates.
* :mod:`~semantic_genesis.phantoms.mri` -- brain MRI patients (FLAIR, T1, T1ce, T2) with a glioma and
  BraTS 2018 labels (:func:`make_mri_patient`).
* :mod:`~semantic_genesis.phantoms.xray` -- chest radiographs projected from the CT patients, with
  findings (nodule, cardiomegaly, effusion, pneumothorax + mask) (:func:`make_radiograph`).
* :mod:`~semantic_genesis.phantoms.cohort` -- the native on-disk layout (resumable writers).
* :mod:`~semantic_genesis.phantoms.shapes` -- the geometric primitives they are built from.

A patient is a deterministic function of ``(cohort seed, patient index)``; see each module's
docstring for axes, intensities and what varies between patients.
"""

from semantic_genesis.phantoms.ct import (
    CT_LABELS,
    Candidate,
    CTPatient,
    Nodule,
    ct_patient_id,
    make_ct_cohort,
    make_ct_patient,
)
from semantic_genesis.phantoms.mri import BRATS_LABELS, MRIPatient, make_mri_cohort, make_mri_patient
from semantic_genesis.phantoms.xray import FINDINGS, Radiograph, draw_findings, make_radiograph, make_xray_cohort

__all__ = [
    "BRATS_LABELS",
    "CT_LABELS",
    "FINDINGS",
    "CTPatient",
    "Candidate",
    "MRIPatient",
    "Nodule",
    "Radiograph",
    "ct_patient_id",
    "draw_findings",
    "make_ct_cohort",
    "make_ct_patient",
    "make_mri_cohort",
    "make_mri_patient",
    "make_radiograph",
    "make_xray_cohort",
]
