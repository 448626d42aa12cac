"""Readers for public dataset layouts, the native phantom layout, and scan discovery.

One module per layout, each documenting what it expects on disk:

* :mod:`~.native` — :class:`NativeCohort` (``images/``, ``labels/``, ``meta/``, ``cohort.json``),
* :mod:`~.luna16` — :class:`Luna16Dataset` (``subset*/<uid>.mhd``, ``annotations.csv``, ``candidates.csv``),
* :mod:`~.lits` — :class:`LitsDataset` (``volume-<i>.nii`` / ``segmentation-<i>.nii``),
* :mod:`~.brats` — :class:`BratsDataset` (``<id>/<id>_{flair,t1,t1ce,t2,seg}.nii.gz``),
* :mod:`~.chestxray14` — :class:`ChestXray14Dataset` (``images/*.png``, ``Data_Entry_2017.csv``, split lists),
* :mod:`~.siim_acr` — :class:`SiimAcrDataset` (``dicom-images-train/**.dcm``, ``train-rle.csv``),
* :mod:`~.rle` — the SIIM-ACR run-length encoding,
* :mod:`~.chexpert` — :func:`read_chexpert` (``train.csv`` / ``valid.csv``, uncertainty policies),
* :mod:`~.mimic_cxr` — :func:`read_mimic_cxr` (``mimic-cxr-2.0.0-{chexpert,metadata,split}.csv.gz``, ``files/``),
* :mod:`~.vindr_cxr` — :func:`read_vindr_cxr` (``annotations/image_labels_{train,test}.csv``, radiologists merged),
* :mod:`~.rsna_pneumonia` — :func:`read_rsna_pneumonia` (``stage_2_train_labels.csv``, boxes -> labels),
* :mod:`~.shenzhen` — :func:`read_shenzhen` (``CXR_png/CHNCXR_<n>_<label>.png``),
* :mod:`~.labelled` — :class:`LabelledImages`, what every chest X-ray reader returns, and
  :mod:`~.cxr` — :func:`read_labelled_images`, the readers by layout name.

:func:`list_scans` is what cube generation and self-discovery call on ``data=DIR``: it recognises the
layout of a folder and returns one :class:`ScanRef` per scan. The reader classes are importable from
this package but loaded lazily, so ``import semantic_genesis.io.datasets`` stays light.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from semantic_genesis.errors import DatasetLayoutError, describe_path
from semantic_genesis.utils.registry import Registry

#: Files recognised as volumes by the generic fallback of :func:`list_scans`.
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd", ".nhdr", ".npy")

_LAZY = {
    "NativeCohort": "native",
    "NativeCase": "native",
    "Luna16Dataset": "luna16",
    "Luna16Scan": "luna16",
    "Luna16Annotation": "luna16",
    "Luna16Candidate": "luna16",
    "LitsDataset": "lits",
    "LitsCase": "lits",
    "BratsDataset": "brats",
    "BratsCase": "brats",
    "ChestXray14Dataset": "chestxray14",
    "ChestXray14Sample": "chestxray14",
    "CHESTXRAY14_LABELS": "chestxray14",
    "SiimAcrDataset": "siim_acr",
    "SiimAcrSample": "siim_acr",
    "rle_encode": "rle",
    "rle_decode": "rle",
    "read_chestxray14": "chestxray14",
    "LabelledImages": "labelled",
    "read_labelled_images": "cxr",
    "CXR_READERS": "cxr",
    "read_chexpert": "chexpert",
    "CHEXPERT_LABELS": "chexpert",
    "CHEXPERT_COMPETITION_LABELS": "chexpert",
    "read_mimic_cxr": "mimic_cxr",
    "read_vindr_cxr": "vindr_cxr",
    "VINDR_LABELS": "vindr_cxr",
    "VINDR_ARK_LABELS": "vindr_cxr",
    "read_rsna_pneumonia": "rsna_pneumonia",
    "RSNA_CLASSES": "rsna_pneumonia",
    "read_shenzhen": "shenzhen",
}

__all__ = ["LAYOUTS", "Layout", "ScanRef", "list_scans", "detect_layout", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class ScanRef:
    """One scan found on disk.

    Attributes:
        patient_id: a stable id (file stem, series UID, case name).
        path: what to pass to ``read_volume`` (a file, or a DICOM series folder) or, for 2D layouts,
            to ``read_image2d``.
        modality: ``"ct"``, ``"mri"``, ``"xray"`` or ``"unknown"`` (generic folders).
        subject: the person the scan belongs to, where the layout tells it and it differs from
            ``patient_id`` (ChestX-ray14 image ``00000001_000`` -> ``00000001``; CheXpert
            ``patient00001``; MIMIC-CXR ``p10000032``); empty otherwise. See :attr:`person`.
    """

    patient_id: str
    path: Path
    modality: str
    subject: str = ""

    @property
    def person(self) -> str:
        """What splits group by: :attr:`subject`, else :attr:`patient_id` (follow-up radiographs
        of one patient then never fall into different splits)."""
        return self.subject or self.patient_id


def _volume_stem(name: str) -> str | None:
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def detect_layout(root: str | Path) -> str:
    """Name the layout of a folder: the first of :data:`LAYOUTS` (``native``, ``luna16``, ``lits``,
    ``brats``, ``chestxray14``, ``siim_acr``, ``mimic_cxr``, ``vindr_cxr``, ``rsna_pneumonia``,
    ``chexpert``, ``shenzhen``) whose files are there; else ``native`` for a folder with ``images/``,
    else ``generic``.

    Raises:
        DatasetLayoutError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{describe_path(root)}: not a folder")
    for name, layout in LAYOUTS.items():
        if layout.detect is not None and layout.detect(root):
            return name
    return "native" if (root / "images").is_dir() else "generic"


def list_scans(root: str | Path, images2d: bool = False) -> list[ScanRef]:
    """Every scan of a folder, recognising its layout (see :func:`detect_layout`).

    * native phantom layout: one ref per patient (its CT, FLAIR or radiograph);
    * LUNA16: every ``subset*/<uid>.mhd`` (``patient_id`` = series UID), CT;
    * LiTS: every ``volume-<i>.nii[.gz]`` (``patient_id`` = ``volume-<i>``), CT;
    * BraTS: every ``<id>_flair.nii[.gz]`` (``patient_id`` = ``<id>``), MRI;
    * ChestX-ray14 / SIIM-ACR / CheXpert / MIMIC-CXR-JPG / VinDr-CXR / RSNA Pneumonia / Shenzhen: every
      radiograph (PNG, JPEG or DICOM) of the layout's image folders, X-ray (``patient_id`` = an image id);
    * otherwise every volume file (``.nii``, ``.nii.gz``, ``.mhd``, ``.mha``, ``.nrrd``, ``.npy``)
      directly in the folder and every sub-folder holding ``.dcm`` files (a DICOM series), sorted by
      name; a folder that itself holds ``.dcm`` files (and no volumes) is one DICOM series. A broken
      or looping symlink with a volume name is listed too, so that reading it names the problem
      instead of the scan silently missing from the cohort.

    With ``images2d`` (2D patch sets), a generic folder also yields its radiographs, recursively: every
    PNG / JPEG file and every DICOM file whose ``Modality`` is a projection modality (CR, DX, ...), each
    one X-ray ref (``patient_id`` = its path relative to ``root`` without the suffix); DICOM series of
    other modalities (CT) stay one volume ref each. ``root`` may then also be a single 2D image.

    ``root`` may also be a single volume file. The result is sorted by ``patient_id`` within a layout.

    Raises:
        DatasetLayoutError: ``root`` does not exist (a broken symlink said so), is empty, or no scan
            was found (the message names the folder and the layouts looked for).
    """
    root = Path(root).expanduser()
    if images2d and root.is_file() and _is_radiograph_file(root):
        return [ScanRef(root.name.split(".")[0], root, "xray")]
    if root.is_file():
        stem = _volume_stem(root.name)
        if stem is None:
            raise DatasetLayoutError(
                f"{describe_path(root)}: not a volume file (expected one of {', '.join(VOLUME_SUFFIXES)})"
            )
        return [ScanRef(stem, root, "unknown")]
    if not root.exists():
        from semantic_genesis.io.paths import unreadable_reason

        raise DatasetLayoutError(f"{root.absolute()}: {unreadable_reason(root) or 'no such file or folder'}")
    layout = detect_layout(root)
    if images2d and layout == "generic":
        refs = _list_generic_2d(root)
    else:
        refs = LAYOUTS.get(layout).list_scans(root)
    if not refs and not any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise DatasetLayoutError(f"{describe_path(root)}: no scans found: the folder is empty (expected volume files or DICOM series)")
    if not refs:
        raise DatasetLayoutError(
            f"{describe_path(root)}: no scans found (looked for the native phantom layout images/, LUNA16 "
            "subset*/*.mhd, LiTS volume-*.nii, BraTS *_flair.nii.gz, ChestX-ray14, SIIM-ACR, CheXpert, MIMIC-CXR-JPG, "
            "VinDr-CXR, RSNA Pneumonia, Shenzhen, and volume files "
            f"{', '.join(VOLUME_SUFFIXES)} or DICOM series folders)"
        )
    return refs


def _list_native(root: Path) -> list[ScanRef]:
    from semantic_genesis.io.datasets.native import NativeCohort

    cohort = NativeCohort(root)
    modality = cohort.modality
    return [ScanRef(pid, cohort.primary_path(pid), modality) for pid in cohort.patient_ids()]


def _list_luna16(root: Path) -> list[ScanRef]:
    refs = [ScanRef(p.stem, p, "ct") for s in root.glob("subset*") if s.is_dir() for p in s.glob("*.mhd")]
    return sorted(refs, key=lambda r: r.patient_id)


def _list_lits(root: Path) -> list[ScanRef]:
    from semantic_genesis.io.datasets.lits import find_lits_volumes

    return [ScanRef(f"volume-{i}", p, "ct") for i, p in sorted(find_lits_volumes(root).items())]


def _list_brats(root: Path) -> list[ScanRef]:
    from semantic_genesis.io.datasets.brats import find_brats_flair

    refs = [ScanRef(p.name.split("_flair.nii")[0], p, "mri") for p in find_brats_flair(root)]
    return sorted(refs, key=lambda r: r.patient_id)


def _list_chestxray14(root: Path) -> list[ScanRef]:
    folders = [root / "images"] + [p / "images" for p in root.glob("images_*")]
    refs = [ScanRef(p.stem, p, "xray", p.stem.split("_")[0]) for f in folders if f.is_dir() for p in f.glob("*.png")]
    # subject: the 8-digit patient of <patient>_<follow-up>.png (chestxray14.person_of)
    return sorted(refs, key=lambda r: r.patient_id)


def _list_siim(root: Path) -> list[ScanRef]:
    folder = root / "dicom-images-train"
    refs = [ScanRef(p.stem, p, "xray") for p in folder.rglob("*.dcm")] if folder.is_dir() else []
    return sorted(refs, key=lambda r: r.patient_id)


def _list_chexpert(root: Path) -> list[ScanRef]:
    refs = []
    for split in ("train", "valid", "test"):
        if (root / split).is_dir():
            for p in (root / split).rglob("*.jpg"):
                parts = p.relative_to(root / split).with_suffix("").parts
                refs.append(ScanRef("_".join(parts), p, "xray", parts[0] if len(parts) > 1 else ""))
    return sorted(refs, key=lambda r: r.patient_id)


def _list_mimic_cxr(root: Path) -> list[ScanRef]:
    folder = root / "files"
    # files/pXX/p<subject_id>/s<study_id>/<dicom_id>.jpg
    refs = [ScanRef(p.stem, p, "xray", p.parent.parent.name) for p in folder.rglob("*.jpg")] if folder.is_dir() else []
    return sorted(refs, key=lambda r: r.patient_id)


def _list_vindr_cxr(root: Path) -> list[ScanRef]:
    from semantic_genesis.io.datasets.vindr_cxr import IMAGE_SUFFIXES

    refs = [
        ScanRef(p.stem, p, "xray")
        for name in ("train", "test", "train_jpeg", "test_jpeg", "train_png", "test_png")
        if (root / name).is_dir()
        for p in (root / name).iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(refs, key=lambda r: r.patient_id)


def _list_rsna(root: Path) -> list[ScanRef]:
    refs = [
        ScanRef(p.stem, p, "xray")
        for name in ("stage_2_train_images", "stage_2_test_images")
        if (root / name).is_dir()
        for p in (root / name).glob("*.dcm")
    ]
    return sorted(refs, key=lambda r: r.patient_id)


def _list_shenzhen(root: Path) -> list[ScanRef]:
    from semantic_genesis.io.datasets.shenzhen import find_shenzhen_images

    return [ScanRef(p.stem, p, "xray") for p in sorted(find_shenzhen_images(root).glob("CHNCXR_*.png"))]


def _list_generic(root: Path) -> list[ScanRef]:
    refs = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() or path.is_symlink() and not path.exists():
            stem = _volume_stem(path.name)
            if stem is not None:
                refs.append(ScanRef(stem, path, _sidecar_modality(path)))
        elif path.is_dir() and any(path.glob("*.dcm")):
            refs.append(ScanRef(path.name, path, "unknown"))
    if not refs and any(root.glob("*.dcm")):  # the folder itself is one DICOM series
        refs.append(ScanRef(root.name, root, "unknown"))
    return refs


def _is_radiograph_file(path: Path) -> bool:
    """A PNG / JPEG file, or a DICOM file whose header names a projection modality (CR, DX, ...)."""
    from semantic_genesis.io.dicom import is_dicom_file
    from semantic_genesis.io.images2d import PROJECTION_MODALITIES

    name = path.name.lower()
    if name.endswith((".png", ".jpg", ".jpeg")):
        return True
    if not (name.endswith((".dcm", ".dicom")) or ("." not in name and is_dicom_file(path))):
        return False
    import pydicom

    try:
        header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # noqa: BLE001 - an unreadable file is reported when it is read
        return name.endswith((".dcm", ".dicom"))
    return str(getattr(header, "Modality", "") or "").strip().upper() in PROJECTION_MODALITIES


def _list_generic_2d(root: Path) -> list[ScanRef]:
    """Radiographs anywhere under ``root`` (one X-ray ref each), then the volumes :func:`_list_generic` finds."""
    radiographs = sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts) and _is_radiograph_file(p)
    )
    refs = [ScanRef(p.relative_to(root).as_posix().split(".")[0], p, "xray") for p in radiographs]
    found = set(radiographs)
    for ref in _list_generic(root):
        if ref.path.is_dir() and all(p in found for p in ref.path.glob("*.dcm")):
            continue  # a folder of DICOM radiographs, not a series
        refs.append(ref)
    return refs


def _sidecar_modality(path: Path) -> str:
    """Modality from a ``.npy`` file's ``.json`` sidecar, when there is one."""
    if path.suffix == ".npy":
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return "unknown"
            value = meta.get("modality") or meta.get("metadata", {}).get("modality")
            if isinstance(value, str):
                return value.lower()
    return "unknown"


@dataclass(frozen=True)
class Layout:
    """A folder layout: ``detect(root) -> bool`` (None: only chosen as the fallback) and
    ``list_scans(root) -> [ScanRef]``."""

    detect: Callable[[Path], bool] | None
    list_scans: Callable[[Path], list[ScanRef]]


def _is_native(root: Path) -> bool:
    return (root / "images").is_dir() and any((root / n).exists() for n in ("cohort.json", "meta", "labels"))


def _is_luna16(root: Path) -> bool:
    return any(p.is_dir() and any(p.glob("*.mhd")) for p in root.glob("subset*"))


def _is_lits(root: Path) -> bool:
    return any(re.match(r"^volume-\d+\.nii(\.gz)?$", p.name) for p in root.rglob("volume-*.nii*"))


def _is_brats(root: Path) -> bool:
    return any(root.rglob("*_flair.nii*"))


def _is_chestxray14(root: Path) -> bool:
    return any((root / n).is_file() for n in ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"))


def _is_siim(root: Path) -> bool:
    return (root / "train-rle.csv").is_file() or (root / "dicom-images-train").is_dir()


def _is_mimic_cxr(root: Path) -> bool:
    return any(root.glob("mimic-cxr-2.*-metadata.csv*"))


def _is_vindr_cxr(root: Path) -> bool:
    return any((d / f"image_labels_{s}.csv").is_file() for d in (root, root / "annotations") for s in ("train", "test"))


def _is_rsna(root: Path) -> bool:
    return (root / "stage_2_train_labels.csv").is_file() or (root / "stage_2_train_images").is_dir()


def _is_chexpert(root: Path) -> bool:
    return (any((root / n).is_file() for n in ("train.csv", "valid.csv"))
            and any((root / n).is_dir() for n in ("train", "valid")))


def _is_shenzhen(root: Path) -> bool:
    folders = (root, root / "CXR_png", root / "ChinaSet_AllFiles" / "CXR_png")
    return any(any(d.glob("CHNCXR_*.png")) for d in folders if d.is_dir())


#: The layout registry, in detection order (:func:`detect_layout` takes the first that matches).
LAYOUTS: Registry[Layout] = Registry("dataset layout", sort=False)
for _name, _layout in (
    ("native", Layout(_is_native, _list_native)),
    ("luna16", Layout(_is_luna16, _list_luna16)),
    ("lits", Layout(_is_lits, _list_lits)),
    ("brats", Layout(_is_brats, _list_brats)),
    ("chestxray14", Layout(_is_chestxray14, _list_chestxray14)),
    ("siim_acr", Layout(_is_siim, _list_siim)),
    ("mimic_cxr", Layout(_is_mimic_cxr, _list_mimic_cxr)),
    ("vindr_cxr", Layout(_is_vindr_cxr, _list_vindr_cxr)),
    ("rsna_pneumonia", Layout(_is_rsna, _list_rsna)),
    ("chexpert", Layout(_is_chexpert, _list_chexpert)),
    ("shenzhen", Layout(_is_shenzhen, _list_shenzhen)),
    ("generic", Layout(None, _list_generic)),
):
    LAYOUTS.add(_name, _layout)
