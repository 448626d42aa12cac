"""Reader for the LiTS (Liver Tumor Segmentation challenge) layout.

Expected layout (the challenge ships ``Training Batch 1/`` and ``Training Batch 2/``; any folder depth
below the root is accepted)::

    ROOT/**/volume-<i>.nii[.gz]          CT in HU
    ROOT/**/segmentation-<i>.nii[.gz]    same grid; 0 background, 1 liver, 2 lesion

A case is the pair with the same number ``<i>`` in the same folder; its segmentation must exist and
have exactly the image's shape. Used by the LCS (liver segmentation) target task of Models Genesis
(Zhou et al., 2019) and Semantic Genesis (Haghighi et al., 2020).

Official split (:func:`official_split`): the official LCS fine-tuning (``lcs_config`` of Models
Genesis' ``keras/downstream_tasks/config.py``) trains on cases 0-99, validates on 100-114 and tests on
115-129 of the 131 training volumes (case 130 is not used), on volumes resized to 256x256 in-plane
(``3D_LiTS_NPY_256x256xZ``; see ``finetune.resize_inplane``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import require_dir

LITS_LABELS = {"background": 0, "liver": 1, "lesion": 2}
_VOLUME_RE = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")

#: The official LCS case ranges: 0-99 train, 100-114 validation, 115-129 test.
OFFICIAL_CASES: dict[str, range] = {"train": range(0, 100), "validation": range(100, 115), "test": range(115, 130)}


def official_split(case_ids: Iterable[int]) -> dict[int, str | None]:
    """The official LCS split of LiTS case numbers (:data:`OFFICIAL_CASES`); ``None`` = not used (case 130)."""
    out: dict[int, str | None] = {}
    for case in case_ids:
        out[int(case)] = next((name for name, cases in OFFICIAL_CASES.items() if int(case) in cases), None)
    return out


@dataclass
class LitsCase:
    """One LiTS case.

    Attributes:
        case_id: the number ``<i>`` of ``volume-<i>``.
        volume: CT ``Volume`` (``array`` float32 ``(X, Y, Z)`` in HU, ``spacing`` mm ``(x, y, z)``).
        mask: uint8 ``(X, Y, Z)`` with 0 background, 1 liver, 2 lesion.
        volume_path, mask_path: the two files.
    """

    case_id: int
    volume: object
    mask: np.ndarray
    volume_path: Path
    mask_path: Path

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm, ``(x, y, z)``."""
        return tuple(self.volume.spacing)

    def liver_mask(self) -> np.ndarray:
        """bool ``(X, Y, Z)``: liver including lesions (labels 1 and 2), the LCS target."""
        return self.mask > 0


def find_lits_volumes(root: Path) -> dict[int, Path]:
    """Map case number to its ``volume-<i>.nii[.gz]`` path for every volume file under ``root``."""
    found: dict[int, Path] = {}
    for path in sorted(root.rglob("volume-*.nii*")):
        match = _VOLUME_RE.match(path.name)
        if match and path.is_file():
            case = int(match.group(1))
            if case in found:
                raise DatasetLayoutError(
                    f"LiTS case {case} appears twice: {describe_path(found[case])} and {describe_path(path)}"
                )
            found[case] = path
    return found


class LitsDataset:
    """LiTS on disk: pairs ``volume-<i>`` with ``segmentation-<i>`` and loads cases.

    Args:
        root: folder holding the NIfTI files (searched recursively).

    Raises:
        DatasetLayoutError: no ``volume-<i>.nii`` file, or a volume without its segmentation file.
        DataError: (on :meth:`load`) a segmentation whose shape differs from its volume, or labels
            outside {0, 1, 2}.
    """

    def __init__(self, root: str | Path):
        self.root = require_dir(Path(root), "LiTS root")
        volumes = find_lits_volumes(self.root)
        if not volumes:
            raise DatasetLayoutError(f"{describe_path(self.root)}: no LiTS 'volume-<i>.nii' files found")
        self._pairs: dict[int, tuple[Path, Path]] = {}
        for case, volume_path in volumes.items():
            suffix = ".nii.gz" if volume_path.name.endswith(".gz") else ".nii"
            candidates = [volume_path.with_name(f"segmentation-{case}{s}") for s in (suffix, ".nii", ".nii.gz")]
            mask_path = next((p for p in candidates if p.is_file()), None)
            if mask_path is None:
                raise DatasetLayoutError(
                    f"{describe_path(candidates[0])}: LiTS segmentation file for {volume_path.name} not found"
                )
            self._pairs[case] = (volume_path, mask_path)

    def case_ids(self) -> list[int]:
        """Case numbers, sorted."""
        return sorted(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self) -> Iterator[LitsCase]:
        for case in self.case_ids():
            yield self.load(case)

    def paths(self, case_id: int) -> tuple[Path, Path]:
        """``(volume_path, segmentation_path)`` of a case."""
        try:
            return self._pairs[int(case_id)]
        except KeyError:
            raise DataError(f"{describe_path(self.root)}: no LiTS case {case_id}") from None

    def load(self, case_id: int) -> LitsCase:
        """Read a case's volume and segmentation, checking that they share one grid."""
        from semantic_genesis.io.volumes import read_volume

        volume_path, mask_path = self.paths(case_id)
        volume = read_volume(volume_path)
        volume.metadata.setdefault("modality", "ct")
        seg = read_volume(mask_path)
        if tuple(seg.array.shape) != tuple(volume.array.shape):
            raise DataError(
                f"LiTS segmentation {describe_path(mask_path)} has shape {tuple(seg.array.shape)} but its "
                f"volume {describe_path(volume_path)} has shape {tuple(volume.array.shape)}; expected equal"
            )
        mask = np.rint(seg.array).astype(np.int16)
        bad = np.setdiff1d(np.unique(mask), list(LITS_LABELS.values()))
        if bad.size:
            raise DataError(
                f"{describe_path(mask_path)}: LiTS labels must be 0, 1, 2; found {bad.tolist()}"
            )
        return LitsCase(int(case_id), volume, mask.astype(np.uint8), volume_path, mask_path)
