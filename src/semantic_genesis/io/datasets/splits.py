"""Which patients go to training, validation and test: the datasets' official splits and the split rule.

Every command that splits patients (``cubes``, ``discover``, ``finetune``/``evaluate``) takes a
``split`` setting with the same meaning:

* ``official``: the split of the official Models Genesis / Semantic Genesis code for this dataset
  (:func:`official_split`); a :class:`~semantic_genesis.errors.ConfigError` for a layout that has none.

  ===========  ============================================================================
  LUNA16       by subset: 0-4 train, 5-6 validation, 7-9 test (pretraining uses 0-4 / 5-6)
  LiTS         cases 0-99 train, 100-114 validation, 115-129 test
  BraTS 2018   folds 1 + 2 shuffled with ``random.Random(4)``: 1/8 validation, rest train; fold 3 test
  ===========  ============================================================================

* ``random`` (or explicit ``[train, validation, test]`` fractions where the command takes them): a
  seeded random split by patient.
* ``auto`` (the default): the official split where the layout defines it by itself, i.e. LUNA16's
  subset folders and ChestX-ray14's ``train_val_list.txt`` / ``test_list.txt`` (when present), as
  long as it gives every split the command needs at least one patient; otherwise a random split. Pretraining and fine-tuning on the same LUNA16 copy then never share a test
  patient. The LiTS and BraTS lists name cases of the full challenge data, so they are used only
  when asked for (``official``; the paper presets do).

Patients an official split does not use (LiTS case 130, BraTS ids outside the folds, scans outside
``subset*`` folders) are left out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from semantic_genesis.errors import ConfigError, DatasetLayoutError

SPLITS = ("train", "validation", "test")

#: What each layout's official split is, for messages and manifests.
OFFICIAL_DESCRIPTIONS = {
    "luna16": "LUNA16 subsets 0-4 train, 5-6 validation, 7-9 test (official Models Genesis / Semantic Genesis)",
    "lits": "LiTS cases 0-99 train, 100-114 validation, 115-129 test (official Models Genesis LCS)",
    "brats": "BraTS 2018 folds 1+2 (1/8 validation, random.Random(4)) / fold 3 test (official Models Genesis BMS)",
    "chestxray14": "ChestX-ray14 official lists: test_list.txt test, train_val_list.txt train with 10% of its "
                   "patients validation (as the DXC reader)",
}

#: Layouts whose official split ``auto`` uses without being asked.
AUTO_OFFICIAL = ("luna16", "chestxray14")


@dataclass(frozen=True)
class SplitChoice:
    """The outcome of a split rule.

    Attributes:
        rule: ``"official"`` or ``"random"`` (what was applied).
        assignment: patient id -> ``"train"`` / ``"validation"`` / ``"test"`` for official splits;
            empty for random ones (the command draws them).
        left_out: patients an official split does not use.
        description: one line for logs and manifests.
    """

    rule: str
    assignment: dict[str, str]
    left_out: tuple[str, ...] = ()
    description: str = ""


def official_split(layout: str, patients: Iterable[tuple[str, str | Path]]) -> dict[str, str | None] | None:
    """The official split of ``layout`` for ``(patient id, path)`` pairs, or ``None`` if it has none.

    Returns:
        patient id -> split name, ``None`` for patients the official split does not use.
    """
    pairs = [(str(pid), path) for pid, path in patients]
    if layout == "luna16":
        from semantic_genesis.io.datasets.luna16 import official_split as luna16_split

        return luna16_split(dict(pairs))
    if layout == "lits":
        from semantic_genesis.io.datasets.lits import official_split as lits_split

        cases = {pid: _lits_case(pid) for pid, _ in pairs}
        by_case = lits_split(c for c in cases.values() if c is not None)
        return {pid: (by_case[c] if c is not None else None) for pid, c in cases.items()}
    if layout == "brats":
        from semantic_genesis.io.datasets.brats import official_split as brats_split

        return brats_split(pid for pid, _ in pairs)
    if layout == "chestxray14":
        from semantic_genesis.io.datasets.chestxray14 import official_person_split

        return official_person_split(path for _, path in pairs)
    return None


def _lits_case(pid: str) -> int | None:
    text = pid[len("volume-"):] if pid.startswith("volume-") else pid
    return int(text) if text.isdigit() else None


def choose_split(
    rule: str | Sequence[float],
    layout: str,
    patients: Sequence[tuple[str, str | Path]],
    needs: Sequence[str] = ("train", "validation"),
    key: str = "split",
    warn=None,
) -> SplitChoice:
    """Apply a split rule (``auto`` / ``official`` / ``random`` / fractions) to a cohort.

    Args:
        rule: the config value.
        layout: the dataset layout (:func:`semantic_genesis.io.datasets.detect_layout`).
        patients: ``(patient id, path)`` of every usable patient.
        needs: splits that must not be empty for ``auto`` to pick the official split (a command
            that never tests, like ``cubes``, needs only train and validation).
        key: the dotted config key, for messages (e.g. ``"cubes.split"``).
        warn: called with one-line warnings (default: print to stderr).

    Returns:
        A :class:`SplitChoice`; for ``random`` the caller draws the split itself (each command keeps
        its own seeded draw).

    Raises:
        ConfigError: ``official`` for a layout without an official split, or an official split that
            uses none of the patients.
    """
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    if not isinstance(rule, str) or rule == "random":
        return SplitChoice("random", {}, (), "random by patient")
    if rule not in ("auto", "official"):
        raise ConfigError(f"{key}: {rule!r} is not one of 'auto', 'official', 'random' or [train, validation, test] fractions")
    try:
        official = official_split(layout, patients) if (rule == "official" or layout in AUTO_OFFICIAL) else None
    except DatasetLayoutError as exc:  # the layout's split lists are missing
        if rule == "official":
            raise ConfigError(f"{key}=official: {exc}") from None
        official = None
    if official is None:
        if rule == "official":
            raise ConfigError(
                f"{key}=official: the {layout} layout has no official split (official splits exist for "
                f"{', '.join(OFFICIAL_DESCRIPTIONS)}); use {key}=random or fractions [train, validation, test]"
            )
        return SplitChoice("random", {}, (), "random by patient")
    assignment = {pid: s for pid, s in official.items() if s is not None}
    left_out = tuple(sorted(pid for pid, s in official.items() if s is None))
    counts = {name: sum(1 for s in assignment.values() if s == name) for name in SPLITS}
    empty = [name for name in needs if counts.get(name, 0) == 0]
    description = OFFICIAL_DESCRIPTIONS[layout]
    if rule == "auto" and empty:
        warn(f"{key}=auto: the {description.split(' (')[0]} split leaves {' and '.join(empty)} empty for these "
             f"{len(patients)} patients; using a random split by patient ({key}=official insists)")
        return SplitChoice("random", {}, (), f"random by patient ({layout} subsets would leave {', '.join(empty)} empty)")
    if not assignment:
        raise ConfigError(
            f"{key}=official: none of the {len(patients)} patients is in the {description}; "
            f"use {key}=random"
        )
    if left_out:
        warn(f"{key}: {len(left_out)} patient(s) are not part of the {description.split(' (')[0]} split and are "
             f"left out (e.g. {left_out[0]})")
    for name in empty:
        warn(f"{key}: the {name} split is empty ({description})")
    return SplitChoice("official", assignment, left_out, description)
