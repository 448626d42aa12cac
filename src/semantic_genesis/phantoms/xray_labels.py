"""The label spaces of the public chest X-ray datasets, computed from a phantom radiograph's findings.

A phantom radiograph knows its findings (:data:`~semantic_genesis.phantoms.xray.FINDINGS`) and their
severities. Each public dataset labels images in its own vocabulary and way, so each export maps the
findings into that dataset's label space here, with the dataset's labelling process simulated
(report labelers with uncertain and unmentioned labels, several radiologists, boxes):

**ChestX-ray14** (14 multi-label): the findings themselves; tuberculosis is reported as
``Infiltration`` (the NIH labels were mined from reports, which describe TB by its opacities).

**CheXpert / MIMIC-CXR** (14 observations, the CheXpert labeler's codes 1 / 0 / -1 / blank):

=============================  ===========================================================
observation                    from findings
=============================  ===========================================================
Enlarged Cardiomediastinum     Hernia (positive); Cardiomegaly alone: uncertain
Cardiomegaly                   Cardiomegaly
Lung Opacity                   Atelectasis, Infiltration, Pneumonia, Consolidation, Edema,
                               Fibrosis, Tuberculosis
Lung Lesion                    Nodule, Mass
Edema / Consolidation /        the finding of the same name
Pneumonia / Atelectasis /
Pneumothorax
Pleural Effusion               Effusion
Pleural Other                  Pleural_Thickening
Fracture, Support Devices      never (the phantoms have neither)
No Finding                     none of the 12 observations above positive or uncertain
=============================  ===========================================================

The *labeler* (training reports, :func:`chexpert_report_codes`) calls an observation uncertain (-1)
when every finding behind it is subtle (severity < :data:`~semantic_genesis.phantoms.xray.SUBTLE_SEVERITY`),
mentions an absent observation as negative (0) with probability :data:`P_EXPLICIT_NEGATIVE` and else
leaves it blank, and hedges ("cannot exclude", -1) on absent Pneumonia, Atelectasis, Consolidation,
Edema and Pleural Effusion with probability :data:`P_HEDGE`; ``No Finding`` is 1 or blank. The
*radiologist* labels (CheXpert's ``valid.csv``, :func:`chexpert_truth`) are exact 0 / 1.

**VinDr-CXR** (28 labels, :data:`VINDR_FROM_FINDINGS`), read by three radiologists
(:func:`vindr_readings`): in each image one of the three reads with errors (misses a present label
with probability 0.35 when subtle, 0.1 otherwise; reports an absent local finding with probability
0.01), the other two read the truth, so the majority vote recovers :func:`vindr_truth` exactly, the
union (``any``) adds the erring reader's false positives and ``all`` drops its misses.

**RSNA Pneumonia** (:func:`rsna_class`): ``Lung Opacity`` when Pneumonia or Consolidation is present
(with a box around each opacity, :func:`opacity_boxes`), else ``No Lung Opacity/Not Normal`` when any
finding is present, else ``Normal``; ``Target`` = Lung Opacity.

**Shenzhen** (binary): ``Tuberculosis``.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from semantic_genesis.phantoms.xray import CHESTXRAY14_FINDINGS, SUBTLE_SEVERITY

BLANK = None  # an unmentioned observation (an empty CSV cell)
P_EXPLICIT_NEGATIVE = 0.25
P_HEDGE = 0.04
HEDGED = ("Pneumonia", "Atelectasis", "Consolidation", "Edema", "Pleural Effusion")

CHESTXRAY14_FROM_FINDINGS: dict[str, tuple[str, ...]] = {f: (f,) for f in CHESTXRAY14_FINDINGS} | {
    "Tuberculosis": ("Infiltration",)
}

#: CheXpert observation -> the findings that make it positive (No Finding, Fracture and Support
#: Devices are handled separately).
CHEXPERT_FROM_FINDINGS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("Hernia",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Lung Opacity": ("Atelectasis", "Infiltration", "Pneumonia", "Consolidation", "Edema", "Fibrosis", "Tuberculosis"),
    "Lung Lesion": ("Nodule", "Mass"),
    "Edema": ("Edema",),
    "Consolidation": ("Consolidation",),
    "Pneumonia": ("Pneumonia",),
    "Atelectasis": ("Atelectasis",),
    "Pneumothorax": ("Pneumothorax",),
    "Pleural Effusion": ("Effusion",),
    "Pleural Other": ("Pleural_Thickening",),
    "Fracture": (),
    "Support Devices": (),
}

#: Finding -> its VinDr-CXR labels.
VINDR_FROM_FINDINGS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Effusion": ("Pleural effusion",),
    "Infiltration": ("Infiltration",),
    "Mass": ("Nodule/Mass", "Lung tumor"),
    "Nodule": ("Nodule/Mass",),
    "Pneumonia": ("Pneumonia", "Lung Opacity"),
    "Pneumothorax": ("Pneumothorax",),
    "Consolidation": ("Consolidation", "Lung Opacity"),
    "Edema": ("Edema",),
    "Emphysema": ("Emphysema", "COPD"),
    "Fibrosis": ("Pulmonary fibrosis", "ILD"),
    "Pleural_Thickening": ("Pleural thickening",),
    "Hernia": ("Other lesion",),
    "Tuberculosis": ("Tuberculosis", "Lung Opacity"),
}
#: Findings whose diagnosis is none of VinDr's specific global labels (COPD, Lung tumor, Pneumonia,
#: Tuberculosis): they set ``Other diseases``.
VINDR_OTHER_DISEASES = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Pneumothorax", "Consolidation", "Edema", "Fibrosis",
    "Pleural_Thickening", "Hernia",
)
VINDR_READERS = 3
VINDR_RADIOLOGIST_POOL = 17  # rad ids R1..R17, as in the release

RSNA_OPACITY_FINDINGS = ("Pneumonia", "Consolidation")


def positives(labels: Mapping[str, bool]) -> tuple[str, ...]:
    """The present findings of a radiograph's ``labels`` dict."""
    return tuple(name for name, value in labels.items() if value)


def chestxray14_labels(findings: Iterable[str]) -> tuple[str, ...]:
    """ChestX-ray14 label names of the findings (ChestX-ray14 order)."""
    names = {label for f in findings for label in CHESTXRAY14_FROM_FINDINGS[f]}
    return tuple(n for n in CHESTXRAY14_FINDINGS if n in names)


def chexpert_truth(findings: Iterable[str]) -> dict[str, int]:
    """Exact 0/1 CheXpert observations (the radiologist labels of ``valid.csv``), ``No Finding`` first."""
    present = set(findings)
    out = {obs: int(any(f in present for f in source)) for obs, source in CHEXPERT_FROM_FINDINGS.items()}
    return {"No Finding": int(not any(out.values())), **out}


def chexpert_report_codes(findings: Iterable[str], severity: Mapping[str, float], rng: np.random.Generator) -> dict[str, int | None]:
    """Simulated CheXpert-labeler codes of a report: 1, 0, -1 or :data:`BLANK` per observation.

    Args:
        findings: the present findings.
        severity: finding -> severity (findings without one count as clear).
        rng: the report's random stream (draws one explicit-negative and one hedge number per
            observation, whatever the findings, so streams stay aligned).
    """
    present = set(findings)
    codes: dict[str, int | None] = {}
    for obs, source in CHEXPERT_FROM_FINDINGS.items():
        explicit, hedge = rng.random(), rng.random()
        drivers = [f for f in source if f in present]
        if drivers:
            clear = any(severity.get(f, 1.0) >= SUBTLE_SEVERITY for f in drivers)
            codes[obs] = 1 if clear else -1
        elif obs == "Enlarged Cardiomediastinum" and "Cardiomegaly" in present:
            codes[obs] = -1
        elif obs in HEDGED and hedge < P_HEDGE:
            codes[obs] = -1
        elif source and explicit < P_EXPLICIT_NEGATIVE:
            codes[obs] = 0
        else:
            codes[obs] = BLANK
    no_finding = all(code in (0, BLANK) for code in codes.values())
    return {"No Finding": 1 if no_finding else BLANK, **codes}


def vindr_truth(findings: Iterable[str]) -> dict[str, int]:
    """Exact 0/1 VinDr-CXR labels (28, release order) of the findings."""
    from semantic_genesis.io.datasets.vindr_cxr import VINDR_LABELS

    present = set(findings)
    names = {label for f in present for label in VINDR_FROM_FINDINGS[f]}
    if present & set(VINDR_OTHER_DISEASES):
        names.add("Other diseases")
    if not present:
        names.add("No finding")
    return {name: int(name in names) for name in VINDR_LABELS}


def vindr_readings(
    findings: Iterable[str], severity: Mapping[str, float], rng: np.random.Generator
) -> list[tuple[str, dict[str, int]]]:
    """Three radiologists' 0/1 readings ``[(rad_id, labels), ...]`` (see the module docstring).

    Each reader's ``No finding`` is 1 exactly when that reader reports nothing else.
    """
    from semantic_genesis.io.datasets.vindr_cxr import VINDR_GLOBAL_LABELS, VINDR_LABELS

    truth = vindr_truth(findings)
    present = set(findings)
    subtle = {label for f in present if severity.get(f, 1.0) < 0.5 for label in VINDR_FROM_FINDINGS[f]}
    rads = rng.choice(VINDR_RADIOLOGIST_POOL, size=VINDR_READERS, replace=False) + 1
    erring = int(rng.integers(VINDR_READERS))
    readings = []
    for k, rad in enumerate(rads):
        labels = {name: value for name, value in truth.items() if name != "No finding"}
        draws = rng.random(len(labels))
        if k == erring:
            for (name, value), u in zip(list(labels.items()), draws):
                if value and u < (0.35 if name in subtle else 0.1):
                    labels[name] = 0
                elif not value and name not in VINDR_GLOBAL_LABELS and u < 0.01:
                    labels[name] = 1
        labels["No finding"] = int(not any(labels.values()))
        readings.append((f"R{int(rad)}", {name: labels[name] for name in VINDR_LABELS}))
    return readings


def rsna_class(findings: Iterable[str]) -> str:
    """``"Lung Opacity"``, ``"No Lung Opacity/Not Normal"`` or ``"Normal"`` (RSNA's 3 classes)."""
    present = set(findings)
    if present & set(RSNA_OPACITY_FINDINGS):
        return "Lung Opacity"
    return "No Lung Opacity/Not Normal" if present else "Normal"


def opacity_boxes(finding_masks: Mapping[str, np.ndarray], shape: tuple[int, int], min_fraction: float = 0.05) -> list[tuple[int, int, int, int]]:
    """RSNA-style boxes ``(x, y, width, height)`` in pixels around each opacity.

    The Pneumonia and Consolidation masks are united; every connected component holding at least
    ``min_fraction`` of the union gets the bounding box of its pixels (largest first).
    """
    from scipy import ndimage

    union = np.zeros(shape, dtype=bool)
    for name in RSNA_OPACITY_FINDINGS:
        if name in finding_masks:
            union |= np.asarray(finding_masks[name], dtype=bool)
    components, count = ndimage.label(union)
    if count == 0:
        return []
    sizes = np.bincount(components.ravel())[1:]
    boxes = []
    for c in np.argsort(-sizes, kind="stable"):
        if sizes[c] < min_fraction * sizes.sum():
            continue
        rows, cols = np.nonzero(components == c + 1)
        boxes.append((int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)))
    return boxes
