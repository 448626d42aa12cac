"""Reader for the NIH ChestX-ray14 layout (14 thoracic diseases, multi-label classification).

Expected layout (as released by the NIH; the per-archive folders of the Kaggle mirror also work)::

    ROOT/images/<8 digits>_<3 digits>.png          (or ROOT/images_001/images/..., ...)
    ROOT/Data_Entry_2017.csv      (or Data_Entry_2017_v2020.csv)
    ROOT/train_val_list.txt       one image name per line (official split, by patient)
    ROOT/test_list.txt

**Splits.** ``train_val`` and ``test`` are the official lists (patient-disjoint). ``train`` and ``val``
split ``train_val`` further by patient: about ``val_fraction`` (default 10 %) of its patients, chosen
from ``val_seed``, form ``val`` (as the DXC target task of Semantic Genesis and Ark do; their own
lists are not released), so no patient is in two of ``train``, ``val`` and ``test``.

``Data_Entry_2017.csv`` columns used: ``Image Index``, ``Finding Labels`` (diseases joined by ``|``, or
``No Finding``), ``Follow-up #``, ``Patient ID``, ``Patient Age``, ``Patient Gender``, ``View Position``
and the original pixel spacing ``OriginalImagePixelSpacing[x`` / ``y]`` together with the original
size ``OriginalImage[Width`` / ``Height]`` (the header's brackets contain commas, so each is split into
two CSV columns). The released PNGs were resized (to 1024 x 1024), so a sample's spacing is the
original spacing scaled by original size / PNG size. The labels are a multi-hot vector over
:data:`CHESTXRAY14_LABELS` (the order used by CheXNet and by the DXC target task of Semantic Genesis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._pixels import image2d_unit
from semantic_genesis.io.datasets._tables import CsvTable, require_dir, require_file
from semantic_genesis.io.datasets.labelled import LabelledImages, normalise_sex, patient_disjoint_split

CHESTXRAY14_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"
#: The header of ``Data_Entry_2017.csv`` as released (the trailing comma makes an unnamed 12th column).
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
SPLITS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
#: Splits made from ``train_val`` by patient (see the module docstring).
DERIVED_SPLITS = ("train", "val")
DEFAULT_VAL_FRACTION = 0.1


def parse_finding_labels(text: str, where: str = "Finding Labels") -> np.ndarray:
    """Multi-hot float32 ``(14,)`` vector from a ``"A|B"`` / ``"No Finding"`` string.

    Raises:
        DataError: an unknown disease name (named, with ``where``).
    """
    vector = np.zeros(len(CHESTXRAY14_LABELS), dtype=np.float32)
    for name in (part.strip() for part in text.split("|")):
        if not name or name == NO_FINDING:
            continue
        try:
            vector[CHESTXRAY14_LABELS.index(name)] = 1.0
        except ValueError:
            raise DataError(
                f"{where}: unknown finding {name!r}; expected one of {', '.join(CHESTXRAY14_LABELS)} "
                f"or {NO_FINDING!r}"
            ) from None
    return vector


def format_finding_labels(vector_or_names) -> str:
    """Inverse of :func:`parse_finding_labels`: names joined by ``|`` in label order, or ``No Finding``."""
    if isinstance(vector_or_names, (list, tuple, set, frozenset)) and all(isinstance(n, str) for n in vector_or_names):
        names = [n for n in CHESTXRAY14_LABELS if n in set(vector_or_names)]
    else:
        vector = np.asarray(vector_or_names)
        names = [n for n, v in zip(CHESTXRAY14_LABELS, vector) if v]
    return "|".join(names) if names else NO_FINDING


@dataclass(frozen=True)
class ChestXray14Record:
    """One row of ``Data_Entry_2017.csv`` (no pixels)."""

    image_index: str
    finding_labels: str
    labels: np.ndarray
    patient_id: int
    follow_up: int
    age: int | None
    gender: str
    view_position: str
    original_size: tuple[int, int] | None
    original_spacing: tuple[float, float] | None
    path: Path


@dataclass
class ChestXray14Sample:
    """One radiograph with its labels.

    Attributes:
        image: float32 ``(H, W)`` in [0, 1] (PNG values / 255, or / 65535 for 16-bit files).
        spacing: ``(row, col)`` pixel spacing in mm of this PNG (``None`` when the CSV has no spacing).
        labels: float32 ``(14,)`` multi-hot over :data:`CHESTXRAY14_LABELS`.
        record: the CSV row.
    """

    image: np.ndarray
    spacing: tuple[float, float] | None
    labels: np.ndarray
    record: ChestXray14Record


def _find_images(root: Path) -> dict[str, Path]:
    folders = [root / "images"] + sorted(p / "images" for p in root.glob("images_*") if p.is_dir())
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in folder.glob("*.png"):
                found.setdefault(path.name, path)
    return found


def person_of(image_name: str) -> str:
    """The patient of an image: ``00000001_000.png`` -> ``00000001`` (the ``Patient ID`` column, zero-padded)."""
    return Path(image_name).name.split("_")[0]


def official_person_split(
    image_paths: Iterable[str | Path], val_fraction: float = DEFAULT_VAL_FRACTION, val_seed: int = 0
) -> dict[str, str | None]:
    """Patient -> ``"train"`` / ``"validation"`` / ``"test"`` from the official lists, for cube and patch sets.

    Patients of ``test_list.txt`` are ``test``; those of ``train_val_list.txt`` are split by patient
    exactly as ``read_chestxray14(split="train" / "val")`` splits them (the DXC target task's
    validation patients become the validation split), so pretraining never sees a target-task test
    patient, as in the Semantic Genesis paper (75,708 pretraining images). Patients in neither list:
    ``None``.

    Args:
        image_paths: image files of the cohort (their folder is searched upwards for the lists).

    Raises:
        DatasetLayoutError: the lists are not found next to the images.
    """
    paths = [Path(p) for p in image_paths]
    root = next((d for p in paths[:1] for d in p.parents if (d / SPLITS["test"]).is_file()), None)
    if root is None or not (root / SPLITS["train_val"]).is_file():
        where = describe_path(paths[0].parent) if paths else "(no images)"
        raise DatasetLayoutError(f"{where}: ChestX-ray14 split lists {SPLITS['train_val']} and {SPLITS['test']} not found")

    def names(list_name: str) -> list[str]:
        text = (root / list_name).read_text(encoding="utf-8")
        return [line.strip() for line in text.splitlines() if line.strip()]

    train_val = names(SPLITS["train_val"])
    # the reader keys patients by the integer Patient ID column, so do the same here
    held = patient_disjoint_split([str(int(person_of(n))) for n in train_val], val_fraction, val_seed)
    split: dict[str, str | None] = {person_of(n): ("validation" if h else "train") for n, h in zip(train_val, held)}
    split.update({person_of(n): "test" for n in names(SPLITS["test"])})
    return {person_of(p.name): split.get(person_of(p.name)) for p in paths}


class ChestXray14Dataset:
    """ChestX-ray14 on disk, one official split.

    Args:
        root: dataset folder.
        split: ``"train_val"`` (``train_val_list.txt``), ``"test"`` (``test_list.txt``), ``"train"`` /
            ``"val"`` (``train_val`` split by patient) or ``"all"`` (every CSV row whose image is on disk).
        val_fraction: fraction of the ``train_val`` patients that form ``val``.
        val_seed: seed of that choice.

    Raises:
        DatasetLayoutError: missing ``images/`` folder, CSV, CSV column or split list.
        DataError: a split list naming an image absent from the CSV or from disk, unknown finding names.
    """

    def __init__(
        self, root: str | Path, split: str = "train_val", val_fraction: float = DEFAULT_VAL_FRACTION, val_seed: int = 0
    ):
        self.root = require_dir(Path(root), "ChestX-ray14 root")
        choices = (*SPLITS, *DERIVED_SPLITS, "all")
        if split not in choices:
            raise DataError(f"ChestX-ray14 split must be one of {', '.join(choices)}, got {split!r}")
        self.split = split
        images = _find_images(self.root)
        if not images:
            raise DatasetLayoutError(
                f"{describe_path(self.root / 'images')}: ChestX-ray14 images folder with PNG files not found"
            )
        csv_path = next(
            (self.root / n for n in ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv") if (self.root / n).is_file()),
            self.root / "Data_Entry_2017.csv",
        )
        table = CsvTable(csv_path, REQUIRED_COLUMNS, what="ChestX-ray14 Data_Entry_2017.csv")
        self._records: dict[str, ChestXray14Record] = {}
        for _line, row in table.rows():
            name = row["Image Index"]
            if name not in images:
                continue
            self._records[name] = _record_from_row(row, images[name])
        if split == "all":
            names = sorted(self._records)
        else:
            list_name = SPLITS["train_val" if split in DERIVED_SPLITS else split]
            list_path = require_file(self.root / list_name, f"ChestX-ray14 split list {list_name}")
            names = [ln.strip() for ln in list_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            for name in names:
                if name not in self._records:
                    where = "on disk" if name not in images else f"in {csv_path.name}"
                    raise DataError(f"{describe_path(list_path)}: image {name!r} is not {where}")
            if split in DERIVED_SPLITS:
                held = patient_disjoint_split([self._records[n].patient_id for n in names], val_fraction, val_seed)
                names = [n for n, h in zip(names, held) if h == (split == "val")]
        self._names = names

    def __len__(self) -> int:
        return len(self._names)

    def image_names(self) -> list[str]:
        """Image names of the split, in list order."""
        return list(self._names)

    def record(self, index: int) -> ChestXray14Record:
        """The CSV record of sample ``index`` (no pixels read)."""
        return self._records[self._names[index]]

    def labels_matrix(self) -> np.ndarray:
        """float32 ``(N, 14)`` multi-hot labels of the whole split."""
        if not self._names:
            return np.zeros((0, len(CHESTXRAY14_LABELS)), dtype=np.float32)
        return np.stack([self._records[n].labels for n in self._names])

    def patient_ids(self) -> np.ndarray:
        """int64 ``(N,)`` patient id of every sample (for patient-wise validation splits)."""
        return np.array([self._records[n].patient_id for n in self._names], dtype=np.int64)

    def __getitem__(self, index: int) -> ChestXray14Sample:
        from semantic_genesis.io.images2d import read_image2d

        record = self.record(index)
        image2d = read_image2d(record.path)
        array = image2d_unit(image2d)
        if array.ndim != 2:
            raise DataError(f"{describe_path(record.path)}: expected a 2D grey image, got shape {array.shape}")
        spacing = None
        if record.original_spacing is not None and record.original_size is not None:
            ow, oh = record.original_size
            sx, sy = record.original_spacing
            spacing = (sy * oh / array.shape[0], sx * ow / array.shape[1])
        elif image2d.metadata.get("spacing_known"):
            spacing = tuple(float(s) for s in image2d.spacing)
        return ChestXray14Sample(array, spacing, record.labels.copy(), record)

    def __iter__(self) -> Iterator[ChestXray14Sample]:
        for i in range(len(self)):
            yield self[i]

    def labelled(self) -> LabelledImages:
        """This split as :class:`~semantic_genesis.io.datasets.labelled.LabelledImages` (multi-label, the
        14 labels, sex from ``Patient Gender``, age from ``Patient Age``, view from ``View Position``)."""
        records = [self._records[n] for n in self._names]
        return LabelledImages(
            dataset="chestxray14",
            split=self.split,
            paths=tuple(r.path for r in records),
            labels=self.labels_matrix(),
            label_names=CHESTXRAY14_LABELS,
            task="multi-label",
            patient_ids=tuple(str(r.patient_id) for r in records),
            image_ids=tuple(r.image_index for r in records),
            sex=tuple(normalise_sex(r.gender, f"{r.image_index} Patient Gender") for r in records),
            age=np.array([np.nan if r.age is None else r.age for r in records], dtype=np.float32),
            views=tuple(r.view_position.upper() or None for r in records),
            extras={"follow_up": tuple(r.follow_up for r in records)},
        )


def read_chestxray14(
    root: str | Path, split: str = "train_val", val_fraction: float = DEFAULT_VAL_FRACTION, val_seed: int = 0
) -> LabelledImages:
    """Read one ChestX-ray14 split as :class:`~semantic_genesis.io.datasets.labelled.LabelledImages`;
    arguments and errors as :class:`ChestXray14Dataset`."""
    return ChestXray14Dataset(root, split, val_fraction=val_fraction, val_seed=val_seed).labelled()


def _record_from_row(row, path: Path) -> ChestXray14Record:
    age_text = row.get("Patient Age").rstrip("Yy")
    age = int(age_text) if age_text.isdigit() else None
    size = spacing = None
    if row.get("OriginalImage[Width") and row.get("Height]"):
        size = (row.int("OriginalImage[Width"), row.int("Height]"))
    if row.get("OriginalImagePixelSpacing[x") and row.get("y]"):
        spacing = (row.float("OriginalImagePixelSpacing[x"), row.float("y]"))
    return ChestXray14Record(
        image_index=row["Image Index"],
        finding_labels=row["Finding Labels"],
        labels=parse_finding_labels(row["Finding Labels"], where=row.where()),
        patient_id=row.int("Patient ID"),
        follow_up=row.int("Follow-up #") if row.get("Follow-up #") else 0,
        age=age,
        gender=row.get("Patient Gender"),
        view_position=row.get("View Position"),
        original_size=size,
        original_spacing=spacing,
        path=path,
    )
