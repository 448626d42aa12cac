"""Which patients a network has seen: hashed patient ids in the weights' metadata.

A pretrained network tested on a patient it was pretrained on overstates transfer (the test scan
was restored, classified or reconstructed during pretraining). So the training engine records in
every weights file it writes the patients of its training and validation data, under the metadata
key ``"patients"``::

    {"hash": "sha256:16",
     "sources": [{"method": "models_genesis", "data": "runs/cubes", "split_rule": "LUNA16 subsets ...",
                  "count": 14, "splits": {"train": ["3f1c...", ...], "validation": [...]}}]}

* ids are hashed (:func:`patient_hash`: the first 16 hex digits of the SHA-256 of the UTF-8 id, no
  salt), so the file names no patient yet a target task's patient ids can be compared with it; the
  ids must be spelled alike (LUNA16: the series UID, LiTS: ``volume-<i>``, BraTS: the case name;
  cube sets, pattern sets and the target tasks all use these);
* ``sources`` is a list: a fine-tuned network keeps the sources of the weights it started from and
  adds its own, so exposure is carried along a chain of trainings;
* the validation patients count as seen: they chose the best epoch;
* a dataset tells its patients through a ``patients_seen()`` method (:class:`PatientSource`; cube and
  pattern sets, the fine-tuning samples); training data without one gives no record (then the
  fine-tuning check says that leakage cannot be checked).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

KEY = "patients"  # the weights-metadata entry
HASH = "sha256:16"
_HEX_DIGITS = 16


def patient_hash(patient_id: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``patient_id`` (UTF-8), as recorded in weights files."""
    return hashlib.sha256(str(patient_id).encode("utf-8")).hexdigest()[:_HEX_DIGITS]


@dataclass
class PatientSource:
    """The patients of one dataset: ``data`` (folder or description), ``split_rule`` (how its patients
    were split, if known) and ``patients`` (raw ids)."""

    data: str
    patients: list[str] = field(default_factory=list)
    split_rule: str | None = None


def dataset_patients(dataset: Any) -> PatientSource | None:
    """The :class:`PatientSource` of ``dataset`` (its ``patients_seen()``), or ``None`` when it cannot tell."""
    if dataset is None:
        return None
    method = getattr(dataset, "patients_seen", None)
    return method() if callable(method) else None


def training_record(method: str, train: Any, validation: Any = None,
                    inherited: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The ``"patients"`` metadata entry of a network trained by ``method`` on ``train`` (and selected
    on ``validation``), after the sources of ``inherited`` (the record of its initial weights).

    Returns ``None`` when the training data cannot tell its patients, or when ``inherited`` is given
    but is not a record (weights without one): an incomplete record would pass a check it must fail.
    """
    if inherited is not None and not is_record(inherited):
        return None
    source = dataset_patients(train)
    if source is None:
        return None
    splits = {"train": sorted({patient_hash(p) for p in source.patients})}
    rule = source.split_rule
    val = dataset_patients(validation)
    if validation is not None and len(validation) > 0:
        if val is None:
            return None
        splits["validation"] = sorted({patient_hash(p) for p in val.patients})
        rule = rule or val.split_rule
    count = len(set().union(*splits.values()))
    own = {"method": method, "data": source.data, "split_rule": rule, "count": count, "splits": splits}
    sources = list(inherited["sources"]) if inherited is not None else []
    return {"hash": HASH, "sources": [*sources, own]}


def is_record(value: Any) -> bool:
    """Whether ``value`` is a ``"patients"`` entry this library can check."""
    return (isinstance(value, Mapping) and value.get("hash") == HASH and isinstance(value.get("sources"), list)
            and all(isinstance(s, Mapping) and isinstance(s.get("splits"), Mapping) for s in value["sources"]))


def seen_hashes(record: Mapping[str, Any]) -> set[str]:
    """Every patient hash of every source and split of a ``"patients"`` record."""
    return {h for source in record["sources"] for members in source["splits"].values() for h in members}


def overlap(record: Mapping[str, Any], patient_ids: Iterable[str]) -> list[str]:
    """The ids among ``patient_ids`` that ``record`` lists as seen (sorted)."""
    seen = seen_hashes(record)
    return sorted({p for p in patient_ids if patient_hash(p) in seen})
