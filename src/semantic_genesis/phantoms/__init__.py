"""The embedded synthetic anatomy: phantom cohorts with consistent anatomy and ground truth.

* :mod:`~semantic_genesis.phantoms.ct` -- chest CT patients in HU (:func:`make_ct_patient`,
  :func:`make_ct_cohort`) with label maps, lung nodules and LUNA16-style candidates.
* :mod:`~semantic_genesis.phantoms.shapes` -- the geometric primitives they are built from.
* :mod:`~semantic_genesis.phantoms.cohort` -- the native on-disk layout.

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

__all__ = [
    "CT_LABELS",
    "CTPatient",
    "Candidate",
    "Nodule",
    "ct_patient_id",
    "make_ct_cohort",
    "make_ct_patient",
]
