"""Pretraining / test leakage: refuse to test a pretrained network on patients it was pretrained on.

The training engine records the (hashed) patients every network was trained and validated on in its
weights file (:mod:`semantic_genesis.provenance`). Before fine-tuning, :func:`check_pretraining_overlap`
compares the **test** patients of the target task with that record:

* none of them seen: ``status="clean"``;
* some seen: a one-line :class:`~semantic_genesis.errors.DataError` naming the patients and the
  weights file, unless ``finetune.allow_pretraining_overlap=true`` (``status="allowed"``, recorded in
  ``result.json`` and in the ``results.json`` / ``results.md`` of the trials protocol);
* weights without a record (official checkpoints converted by ``weights import``, files written before
  records existed, or pretrained on data that does not name its patients), or task data that name
  crops instead of patients (the official NCS arrays): ``status="unchecked"``, with a one-line
  warning that leakage cannot be checked;
* scratch: ``status="scratch"``.

Example: a cube set cut from LUNA16 with a random patient split puts NCC test scans (LUNA16 subsets
7-9) into pretraining and is refused; the official subset split (``cubes.split=auto``) keeps them out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from semantic_genesis.errors import DataError, describe_path

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.finetune.models import InitSpec

SHOWN = 3  # patient ids named in a message


@dataclass
class OverlapCheck:
    """The outcome of :func:`check_pretraining_overlap` for one initialisation.

    Attributes:
        init: the initialisation's name; path: its weights file (``None`` for scratch).
        status: ``"scratch"``, ``"clean"``, ``"unchecked"`` (no record) or ``"allowed"`` (overlap
            accepted with ``finetune.allow_pretraining_overlap``).
        patients: the test patients the weights were pretrained on (``allowed`` only).
        test_patients: how many test patients were checked.
        message: one line for the user (``unchecked`` / ``allowed``), else empty.
    """

    init: str
    path: str | None
    status: str
    test_patients: int = 0
    patients: list[str] = field(default_factory=list)
    message: str = ""

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def record_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """The ``"patients"`` record in weights metadata (``{}`` when there is none)."""
    from semantic_genesis.provenance import KEY, is_record

    record = metadata.get(KEY)
    return dict(record) if is_record(record) else {}


def init_record(path) -> dict[str, Any]:
    """The ``"patients"`` record of a weights file (``{}`` when it has none, or is a PyTorch checkpoint)."""
    from semantic_genesis.models.weights import is_safetensors, read_metadata

    return record_of(read_metadata(path)) if is_safetensors(path) else {}


def check_pretraining_overlap(init: "InitSpec", test_patients: Iterable[str] | None, task: str,
                              allow: bool = False) -> OverlapCheck:
    """Compare the test patients of ``task`` with the patients the weights of ``init`` have seen.

    Args:
        init: scratch or a weights file.
        test_patients: patient ids of the task's test split (as the task names them); ``None`` when
            the task's data names no patients (then a weights file is ``unchecked``).
        task: the task's name (for messages).
        allow: ``finetune.allow_pretraining_overlap``: accept an overlap (then recorded).

    Raises:
        DataError: the weights were pretrained on test patients and ``allow`` is false.
    """
    from semantic_genesis.provenance import overlap

    ids = [] if test_patients is None else sorted({str(p) for p in test_patients})
    if init.path is None:
        return OverlapCheck(init.name, None, "scratch", len(ids))
    where = describe_path(init.path)
    if test_patients is None:
        return OverlapCheck(init.name, str(init.path), "unchecked", message=(
            f"warning: the {task} data name crops, not patients; leakage between the pretraining of {where} "
            f"(init {init.name}) and the {task} test set cannot be checked"))
    record = init_record(init.path)
    if not record:
        return OverlapCheck(init.name, str(init.path), "unchecked", len(ids), message=(
            f"warning: {where} (init {init.name}) records no pretraining patients (imported or older weights); "
            f"leakage between its pretraining and the {task} test set cannot be checked"))
    seen = overlap(record, ids)
    if not seen:
        return OverlapCheck(init.name, str(init.path), "clean", len(ids))
    named = ", ".join(seen[:SHOWN]) + (f" and {len(seen) - SHOWN} more" if len(seen) > SHOWN else "")
    if not allow:
        raise DataError(
            f"{where}: init {init.name} was pretrained on {len(seen)} of the {len(ids)} {task} test patients "
            f"({named}), which would inflate its test scores; pretrain on a split that keeps them out (e.g. "
            "cubes.split=auto / discovery.split=auto on LUNA16: subsets 7-9 stay out) or set "
            "finetune.allow_pretraining_overlap=true to fine-tune anyway (recorded in the results)")
    return OverlapCheck(init.name, str(init.path), "allowed", len(ids), seen, message=(
        f"warning: {where} (init {init.name}) was pretrained on {len(seen)} of the {len(ids)} {task} test "
        f"patients ({named}); allowed by finetune.allow_pretraining_overlap=true and recorded in the results"))


def split_test_patients(data, split: dict) -> list[str] | None:
    """The patient ids of the ``test`` split of ``data`` (a TaskData and its split indices); ``None``
    when the data name no patients (``info["anonymous"]``: e.g. the official NCS arrays, crops of
    LIDC-IDRI scans, of which LUNA16 is a subset)."""
    if data.info.get("anonymous"):
        return None
    return sorted({str(data.patients[int(i)]) for i in split.get("test", ())})
