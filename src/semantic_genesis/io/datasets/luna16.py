"""Reader for the LUNA16 challenge layout (lung nodule detection / false-positive reduction).

Expected layout (as distributed by the challenge; the phantom export writes the same)::

    ROOT/
      subset0/ ... subset9/        <seriesuid>.mhd + <seriesuid>.raw  (CT in HU, MetaImage)
      annotations.csv              seriesuid,coordX,coordY,coordZ,diameter_mm
      candidates.csv               seriesuid,coordX,coordY,coordZ,class   (or candidates_V2.csv)

The CSV files may also sit in ``ROOT/CSVFILES/``. Coordinates in both CSV files are **world**
coordinates in mm (ITK/LPS physical space, the ``Offset``/``ElementSpacing``/``TransformMatrix`` of the
``.mhd`` header). This reader converts them to **voxel** coordinates ``(x, y, z)`` of the volume array
(``Volume.array`` is ``(X, Y, Z)``, Z the slice axis) with the exact world-to-voxel map of the image
(direction included), so ``volume.array[tuple(np.round(center_vox).astype(int))]`` is the voxel at the
annotated point. Used by the NCC (candidates) and NCS (annotations) target tasks of Models Genesis
(Zhou et al., 2019) and Semantic Genesis (Haghighi et al., 2020).

Points outside their scan: a candidate or annotation whose centre lies outside the volume (the
voxel containing it does not exist; e.g. a CSV made for another version of the scan, or voxel instead
of world coordinates) would become an all-padding crop with a label. :meth:`Luna16Dataset.load` drops
such points and warns with their count, the scan and the CSV file; the counts are kept in
:attr:`Luna16Scan.outside_candidates` / :attr:`Luna16Scan.outside_annotations`.

Official split: the official Models Genesis / Semantic Genesis code splits LUNA16 by subset, never
by a random draw: pretraining cubes and patterns come from subsets 0-4 (train) and 5-6 (validation),
and the NCC target task trains on 0-4, validates on 5-6 and tests on 7-9 (``ncc_config`` of
``keras/downstream_tasks/config.py``; the pretraining scripts load the same subset numbers). So a
model pretrained and fine-tuned on LUNA16 never sees a test scan. :func:`official_split` gives that
assignment (:data:`SUBSET_SPLITS`).

Strictness: a CSV row whose ``seriesuid`` has no ``.mhd`` file under any ``subset*`` folder is an error
naming the file, row number and uid (``strict=True``, the default). With ``strict=False`` such rows
are skipped with a warning, which is what one wants when only some subsets were downloaded.
"""

from __future__ import annotations

import warnings
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import CsvTable, require_dir

ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")

#: Split of each LUNA16 subset in the official code: 0-4 train, 5-6 validation, 7-9 test.
SUBSET_SPLITS: dict[int, str] = {
    **{k: "train" for k in range(5)}, 5: "validation", 6: "validation", **{k: "test" for k in (7, 8, 9)},
}
_SUBSET_RE = re.compile(r"^subset(\d+)$")


def subset_of(path: str | Path) -> int | None:
    """The LUNA16 subset number of a scan file (``.../subset3/<uid>.mhd`` -> 3), ``None`` if not in one."""
    match = _SUBSET_RE.match(Path(path).parent.name)
    return int(match.group(1)) if match else None


def official_split(paths: Mapping[str, str | Path]) -> dict[str, str | None]:
    """The official split of LUNA16 scans by subset (:data:`SUBSET_SPLITS`).

    Args:
        paths: patient (series) id -> its ``.mhd`` path under ``subset<k>/``.

    Returns:
        patient id -> ``"train"``, ``"validation"`` or ``"test"``; ``None`` for a scan that is not in a
        ``subset0``..``subset9`` folder (left out).
    """
    out: dict[str, str | None] = {}
    for pid, path in paths.items():
        subset = subset_of(path)
        out[pid] = SUBSET_SPLITS.get(subset) if subset is not None else None
    return out


class Luna16Annotation(NamedTuple):
    """One annotated nodule: ``center_vox`` float64 ``(3,)`` in voxel ``(x, y, z)``, diameter in mm."""

    center_vox: np.ndarray
    diameter_mm: float


class Luna16Candidate(NamedTuple):
    """One candidate location: ``center_vox`` float64 ``(3,)`` voxel ``(x, y, z)``; label 1 nodule, 0 not."""

    center_vox: np.ndarray
    label: int


@dataclass
class Luna16Scan:
    """One LUNA16 CT scan with its annotations and candidates in voxel space.

    Attributes:
        seriesuid: the series instance UID (the file stem).
        subset: the ``subset*`` folder name the scan was found in.
        volume: the CT (``Volume``; ``array`` float32 ``(X, Y, Z)`` in HU, ``spacing`` mm ``(x, y, z)``).
        annotations: nodules, ``(center_vox, diameter_mm)``, inside the volume.
        candidates: candidate points, ``(center_vox, label)``, inside the volume.
        outside_annotations, outside_candidates: how many CSV points of this series were dropped
            because their centre lies outside the volume.
    """

    seriesuid: str
    subset: str
    volume: object
    annotations: list[Luna16Annotation] = field(default_factory=list)
    candidates: list[Luna16Candidate] = field(default_factory=list)
    outside_annotations: int = 0
    outside_candidates: int = 0

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm, ``(x, y, z)``."""
        return tuple(self.volume.spacing)


class Luna16Dataset:
    """LUNA16 on disk: series index, CSV rows grouped per series, and scan loading.

    Args:
        root: the folder holding ``subset*/`` and the CSV files.
        strict: raise on CSV rows whose series is not on disk (default); ``False`` skips them with a
            warning.

    Raises:
        DatasetLayoutError: no ``subset*`` folder with ``.mhd`` files, a missing CSV file or column.
        DataError: a CSV row for a series that does not exist (strict), or a malformed number.
    """

    def __init__(self, root: str | Path, strict: bool = True):
        self.root = require_dir(Path(root), "LUNA16 root")
        self.strict = strict
        self._paths: dict[str, Path] = {}
        subsets = sorted(p for p in self.root.glob("subset*") if p.is_dir())
        if not subsets:
            raise DatasetLayoutError(
                f"{describe_path(self.root)}: no LUNA16 'subset0'..'subset9' folders found"
            )
        for subset in subsets:
            for mhd in sorted(subset.glob("*.mhd")):
                self._paths[mhd.stem] = mhd
        if not self._paths:
            raise DatasetLayoutError(
                f"{describe_path(self.root)}: the subset folders ({', '.join(s.name for s in subsets)}) "
                "contain no '<seriesuid>.mhd' files"
            )
        self.annotations_path = self._find_csv(("annotations.csv",))
        self.candidates_path = self._find_csv(("candidates.csv", "candidates_V2.csv"))
        self._annotations = self._read_points(self.annotations_path, ANNOTATION_COLUMNS, "diameter_mm")
        self._candidates = self._read_points(self.candidates_path, CANDIDATE_COLUMNS, "class")

    def _find_csv(self, names: tuple[str, ...]) -> Path:
        for folder in (self.root, self.root / "CSVFILES"):
            for name in names:
                if (folder / name).is_file():
                    return folder / name
        raise DatasetLayoutError(
            f"{describe_path(self.root / names[0])}: LUNA16 {names[0]} not found"
            f" (looked for {' or '.join(names)} in the root and in CSVFILES/)"
        )

    def _read_points(self, path: Path, columns: tuple[str, ...], value_column: str) -> dict[str, list]:
        table = CsvTable(path, columns, what=f"LUNA16 {path.name}")
        grouped: dict[str, list] = {}
        skipped = 0
        for _line, row in table.rows():
            uid = row["seriesuid"]
            if uid not in self._paths:
                if self.strict:
                    raise DataError(
                        f"{row.where()}: seriesuid {uid!r} has no .mhd file in any subset folder of "
                        f"{describe_path(self.root)} (use strict=False to skip rows of missing series)"
                    )
                skipped += 1
                continue
            world = np.array([row.float("coordX"), row.float("coordY"), row.float("coordZ")])
            value = row.float(value_column) if value_column == "diameter_mm" else row.int(value_column)
            grouped.setdefault(uid, []).append((world, value))
        if skipped:
            warnings.warn(
                f"{describe_path(path)}: skipped {skipped} rows whose series is not on disk", stacklevel=3
            )
        return grouped

    def series_ids(self) -> list[str]:
        """All series UIDs found on disk, sorted."""
        return sorted(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[Luna16Scan]:
        for uid in self.series_ids():
            yield self.load(uid)

    def path(self, seriesuid: str) -> Path:
        """The ``.mhd`` file of a series."""
        try:
            return self._paths[seriesuid]
        except KeyError:
            raise DataError(f"{describe_path(self.root)}: no LUNA16 series {seriesuid!r}") from None

    def annotations_world(self, seriesuid: str) -> list[tuple[np.ndarray, float]]:
        """Annotated nodules of a series as ``(center_world_mm (3,), diameter_mm)``, as in the CSV."""
        self.path(seriesuid)
        return [(w.copy(), float(d)) for w, d in self._annotations.get(seriesuid, [])]

    def candidates_world(self, seriesuid: str) -> list[tuple[np.ndarray, int]]:
        """Candidates of a series as ``(center_world_mm (3,), label)``, as in the CSV."""
        self.path(seriesuid)
        return [(w.copy(), int(c)) for w, c in self._candidates.get(seriesuid, [])]

    def load(self, seriesuid: str) -> Luna16Scan:
        """Read one series and convert its CSV points to voxel coordinates of its volume.

        Points whose centre lies outside the volume are dropped with a warning (see the module
        docstring); :attr:`Luna16Scan.outside_candidates` and ``outside_annotations`` count them.
        """
        from semantic_genesis.io.volumes import read_volume

        path = self.path(seriesuid)
        volume = read_volume(path)
        volume.metadata.setdefault("modality", "ct")
        annotations = [
            Luna16Annotation(_world_to_voxel(volume, w), d) for w, d in self.annotations_world(seriesuid)
        ]
        candidates = [
            Luna16Candidate(_world_to_voxel(volume, w), c) for w, c in self.candidates_world(seriesuid)
        ]
        kept_annotations = [a for a in annotations if point_inside(a.center_vox, volume.shape)]
        kept_candidates = [c for c in candidates if point_inside(c.center_vox, volume.shape)]
        for csv, points, kept in (
            (self.candidates_path, candidates, kept_candidates),
            (self.annotations_path, annotations, kept_annotations),
        ):
            if len(kept) < len(points):
                first = next(p.center_vox for p in points if not point_inside(p.center_vox, volume.shape))
                warnings.warn(
                    f"{describe_path(path)}: {len(points) - len(kept)} of {len(points)} points of {csv.name} lie "
                    f"outside the scan (shape {volume.shape}; e.g. voxel "
                    f"({', '.join(f'{v:.1f}' for v in first)})) and were dropped",
                    stacklevel=2,
                )
        return Luna16Scan(
            seriesuid,
            path.parent.name,
            volume,
            kept_annotations,
            kept_candidates,
            outside_annotations=len(annotations) - len(kept_annotations),
            outside_candidates=len(candidates) - len(kept_candidates),
        )


def point_inside(center_vox: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether the voxel containing continuous voxel coordinates ``center_vox`` exists in ``shape``.

    Voxel ``i`` covers ``[i - 0.5, i + 0.5)`` along each axis, so the volume covers
    ``[-0.5, n - 0.5)``.
    """
    c = np.asarray(center_vox, dtype=np.float64)
    return bool(np.all(np.isfinite(c)) and np.all(c >= -0.5) and np.all(c < np.asarray(shape, dtype=np.float64) - 0.5))


def _world_to_voxel(volume, world: np.ndarray) -> np.ndarray:
    return np.asarray(volume.world_to_voxel(np.asarray(world, dtype=np.float64)), dtype=np.float64).reshape(3)
