"""The embedded synthetic anatomy: phantom cohorts with consistent anatomy and ground truth.

* :mod:`~semantic_genesis.phantoms.ct` -- chest CT patients in HU (:func:`make_ct_patient`,
  :func:`make_ct_cohort`) with label maps, lung nodules and LUNA16-style candidates.
* :mod:`~semantic_genesis.phantoms.mri` -- brain MRI patients (FLAIR, T1, T1ce, T2) with a glioma and
  BraTS 2018 labels (:func:`make_mri_patient`).
* :mod:`~semantic_genesis.phantoms.xray` -- chest radiographs projected from the CT patients, with
  the 14 ChestX-ray14 findings and tuberculosis (:mod:`~semantic_genesis.phantoms.xray_findings`),
  patient sex and the pneumothorax mask (:func:`make_radiograph`, :func:`draw_xray_spec`).
* :mod:`~semantic_genesis.phantoms.cohort` -- the native on-disk layout (resumable writers).
* :mod:`~semantic_genesis.phantoms.export` -- the public layouts (LUNA16, LiTS, BraTS and, with their
  own label spaces, ChestX-ray14, SIIM-ACR, CheXpert, MIMIC-CXR-JPG, VinDr-CXR, RSNA Pneumonia,
  Shenzhen: :mod:`~semantic_genesis.phantoms.export_xray`, :mod:`~semantic_genesis.phantoms.xray_labels`).
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
from semantic_genesis.phantoms.xray import (
    FINDINGS,
    Radiograph,
    XraySpec,
    draw_findings,
    draw_xray_spec,
    make_radiograph,
    make_xray_cohort,
)

__all__ = [
    "BRATS_LABELS",
    "CT_LABELS",
    "FINDINGS",
    "CTPatient",
    "Candidate",
    "MRIPatient",
    "Nodule",
    "Radiograph",
    "XraySpec",
    "ct_patient_id",
    "draw_findings",
    "draw_xray_spec",
    "make_ct_cohort",
    "make_ct_patient",
    "make_mri_cohort",
    "make_mri_patient",
    "make_radiograph",
    "make_xray_cohort",
]
