"""Whole radiographs from a folder, resized and centre-cropped, for methods that cut their own views (PEAC).

:func:`radiograph_splits` lists the 2D images of a folder and splits them by patient:

* a **ChestX-ray14** folder (``train_val_list.txt`` / ``test_list.txt`` next to ``images/``): the
  official lists, as the 2D patch sets split them
  (:func:`~semantic_genesis.io.datasets.chestxray14.official_person_split`): the DXC validation
  patients form the validation split and the ``test_list.txt`` patients are never read, so a
  pretrained network is not tested on images it was pretrained on (PEAC's official code pretrains on
  the official train + val lists);
* any other folder (e.g. ``semantic-genesis phantom xray`` output, a folder of PNG or DICOM files):
  every image under ``images/`` when the folder has one (the phantom and ChestX-ray14 layouts keep
  label maps elsewhere), else every image below the folder; the patient is the file stem, and a
  seeded ``val_fraction`` of the patients forms the validation split.

:class:`RadiographImages` reads one image per item (PNG/JPEG/DICOM through
:func:`~semantic_genesis.io.images2d.read_image2d`, scaled to [0, 1] by the file's value range),
resizes the shorter side to ``size`` and cuts the centred square (the official PEAC
``KeepRatioResize`` + ``CenterCrop``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from semantic_genesis.errors import ConfigError, DataError, describe_path
from semantic_genesis.io.images2d import IMAGE2D_SUFFIXES


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE2D_SUFFIXES)


def radiograph_splits(root: str | Path, val_fraction: float = 0.05, seed: int = 0) -> tuple[dict[str, list[Path]], dict[str, list[str]], str]:
    """``(paths, patients, rule)``: per split (``"train"``, ``"validation"``) the image files and their
    patients, and a sentence saying how the split was made.

    Raises:
        DataError: the folder is missing or holds no 2D image.
        ConfigError: ``val_fraction`` outside [0, 1).
    """
    from semantic_genesis.io.datasets.chestxray14 import SPLITS, official_person_split, person_of

    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{describe_path(root)}: not a folder of radiographs")
    images = root / "images"
    files = _image_files(images if images.is_dir() else root)
    if not files:
        raise DataError(f"{describe_path(root)}: no 2D images ({', '.join(IMAGE2D_SUFFIXES)}) found")
    out: dict[str, list[Path]] = {"train": [], "validation": []}
    who: dict[str, list[str]] = {"train": [], "validation": []}
    if all((root / name).is_file() for name in SPLITS.values()):
        split = official_person_split(files, val_seed=seed)
        for path in files:
            part = split.get(person_of(path.name))
            if part in out:
                out[part].append(path)
                who[part].append(person_of(path.name))
        rule = "ChestX-ray14 official lists: train_val_list.txt split by patient; test_list.txt left out"
        return out, who, rule
    patients = sorted({p.stem for p in files})
    order = np.random.default_rng(seed).permutation(len(patients))
    n_val = int(round(val_fraction * len(patients))) if len(patients) > 1 else 0
    held = {patients[i] for i in order[:n_val]}
    for path in files:
        part = "validation" if path.stem in held else "train"
        out[part].append(path)
        who[part].append(path.stem)
    rule = f"random by patient (file stem), {val_fraction:.0%} for validation (seed {seed})"
    return out, who, rule


def resize_and_centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``image (H, W)`` so its shorter side is ``size`` (area averaging when shrinking, bilinear
    when enlarging), then cut the centred ``size x size`` square: the official PEAC ``KeepRatioResize``
    (``cv2.INTER_AREA``) + ``CenterCrop``. Returns float32 ``(size, size)``."""
    import torch.nn.functional as F

    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2 or min(array.shape) < 1:
        raise DataError(f"expected a 2D image (H, W), got shape {array.shape}")
    h, w = array.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = torch.from_numpy(array)[None, None]
    if (new_h, new_w) != (h, w):
        mode = "area" if scale < 1 else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x, size=(new_h, new_w), mode=mode, **kwargs)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[0, 0, top:top + size, left:left + size].contiguous().numpy()


class RadiographImages(Dataset):
    """Radiographs as ``{"image": float32 (1, size, size) in [0, 1], "index": int}`` samples.

    Args:
        paths: image files.
        patients: the patient of each file (recorded in the weights' metadata).
        size: side of the square output.
        source: the data folder (for the record).
        split_rule: how the patients were split (for the record).
    """

    def __init__(self, paths: Sequence[Path], patients: Sequence[str], size: int, source: str = "",
                 split_rule: str | None = None):
        if len(paths) != len(patients):
            raise DataError("RadiographImages: one patient per path is needed")
        self.paths = [Path(p) for p in paths]
        self.patients = [str(p) for p in patients]
        self.size = int(size)
        self.source = source
        self.split_rule = split_rule

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> np.ndarray:
        """float32 ``(size, size)`` in [0, 1]: image ``index`` resized and centre-cropped."""
        from semantic_genesis.io.datasets._pixels import image2d_unit
        from semantic_genesis.io.images2d import read_image2d

        path = self.paths[index]
        array = image2d_unit(read_image2d(path))
        if array.ndim != 2:
            raise DataError(f"{describe_path(path)}: expected a 2D grey image, got shape {array.shape}")
        return np.clip(resize_and_centre_crop(array, self.size), 0.0, 1.0)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": torch.from_numpy(self.read(index))[None], "index": int(index)}

    def patients_seen(self):
        from semantic_genesis.provenance import PatientSource

        return PatientSource(data=self.source, patients=sorted(set(self.patients)), split_rule=self.split_rule)
