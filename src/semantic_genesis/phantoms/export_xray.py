"""The phantom radiograph cohort written in the layouts of the public chest X-ray datasets.

Each layout gets the same kind of patients (a CT phantom projected with the findings, sex, age and
view of :func:`~semantic_genesis.phantoms.xray.draw_xray_spec`) but labels them in ITS OWN label space
(:mod:`~semantic_genesis.phantoms.xray_labels`), so the real readers in
:mod:`semantic_genesis.io.datasets` and Ark's multi-dataset training run end to end offline:

==================  ==========================================================  ===================
layout              files                                                       labels
==================  ==========================================================  ===================
``chestxray14``     ``images/<8 digits>_000.png``, ``Data_Entry_2017.csv``,      14, multi-label
                    ``train_val_list.txt``, ``test_list.txt``
``siim``            ``dicom-images-train/<study>/<series>/<sop>.dcm``,           pneumothorax masks
                    ``train-rle.csv``
``chexpert``        ``train/patientNNNNN/study1/view1_frontal.jpg``,             14, 1/0/-1/blank
                    ``train.csv`` (labeler), ``valid.csv`` (exact)
``mimic_cxr``       ``files/p1x/p1xxxxxxx/sNNNNNNNN/<dicom_id>.jpg``,            14 (alphabetical),
                    ``mimic-cxr-2.0.0-{chexpert,metadata,split}.csv.gz``,        1/0/-1/blank
                    ``hosp/patients.csv.gz`` (MIMIC-IV's table: sex, age)
``vindr_cxr``       ``train|test/<image_id>.dicom``,                             28, 3 radiologists
                    ``annotations/image_labels_{train,test}.csv``                (train), consensus
``rsna_pneumonia``  ``stage_2_train_images/<patientId>.dcm``,                    boxes -> binary or
                    ``stage_2_train_labels.csv``, ``stage_2_detailed_class_info``  3 classes
``shenzhen``        ``ChinaSet_AllFiles/CXR_png/CHNCXR_<n>_<0|1>.png``,          1, binary (TB)
                    ``ClinicalReadings/<same>.txt`` (sex, age, reading)
==================  ==========================================================  ===================

Patient sex is recorded where the real dataset records it: ChestX-ray14 ``Patient Gender``,
CheXpert ``Sex``, the DICOM ``PatientSex`` of SIIM-ACR, VinDr-CXR and RSNA, Shenzhen's clinical
readings, and for MIMIC-CXR-JPG (whose release has none) a MIMIC-IV style ``hosp/patients.csv.gz``.
Every fifth patient forms the held-out split (test / valid) of the layouts that have one
(:func:`held_out_split`).

:func:`write_patient` writes one patient and returns a JSON record; :func:`write_tables` writes the
tables from all records. Both are plain functions of their arguments, so
:mod:`semantic_genesis.phantoms.export` can run them in a process pool and resume.
"""

from __future__ import annotations

import gzip
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semantic_genesis.errors import ConfigError
from semantic_genesis.utils.atomic import write_bytes, write_text
from semantic_genesis.utils.seeding import derive_seed

XRAY_EXPORT_LAYOUTS = ("chestxray14", "siim", "chexpert", "mimic_cxr", "vindr_cxr", "rsna_pneumonia", "shenzhen")
SIIM_UID_ROOT = "1.2.276.0.7230010.3.1."
SIIM_UID_ORG = "8323329"
HELD_OUT_FRACTION = 0.2


@dataclass(frozen=True)
class XrayExportOptions:
    """The generation settings shared by every patient of an export (recorded for resuming).

    Attributes:
        seed: cohort seed.
        ct_shape: grid of the projected CT phantom (``None``: the generator's default).
        size: radiograph ``(H, W)`` (``None``: 256 x 256).
        finding_rate: probability of each finding.
        female_fraction: probability that a patient is female.
        ap_fraction: probability of an AP view.
    """

    seed: int = 0
    ct_shape: tuple[int, int, int] | None = None
    size: tuple[int, int] | None = None
    finding_rate: float = 0.2
    female_fraction: float = 0.5
    ap_fraction: float = 0.3

    def settings(self) -> dict[str, Any]:
        """JSON-able settings (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _radiograph(index: int, options: XrayExportOptions):
    from semantic_genesis.phantoms.xray import draw_xray_spec, radiograph_from_spec

    spec = draw_xray_spec(index, options.seed, options.finding_rate, options.female_fraction, options.ap_fraction)
    size = (256, 256) if options.size is None else tuple(int(s) for s in options.size)
    return spec, radiograph_from_spec(index, options.seed, spec, options.ct_shape, size)


def _write_png_or_jpg(radiograph, path: Path) -> None:
    from semantic_genesis.io.images2d import Image2D, write_image2d

    image = np.clip(np.asarray(radiograph.image, dtype=np.float32), 0.0, 1.0)
    write_image2d(Image2D(image, radiograph.spacing, {"modality": "xray"}), path, bits=8)


def _write_dicom(radiograph, path: Path, attributes: dict[str, Any], modality: str = "DX", photometric: str = "MONOCHROME2") -> None:
    from semantic_genesis.io.images2d import Image2D, write_image2d

    image = np.clip(np.asarray(radiograph.image, dtype=np.float32), 0.0, 1.0)
    write_image2d(
        Image2D(image, radiograph.spacing, {"modality": "xray"}), path, bits=8, modality=modality,
        photometric=photometric, attributes=attributes,
    )


def _dicom_demographics(spec, radiograph) -> dict[str, Any]:
    return {"PatientSex": radiograph.sex, "PatientAge": f"{spec.age:03d}Y", "ViewPosition": radiograph.view,
            "BodyPartExamined": "CHEST"}


def held_out_split(index: int) -> str | None:
    """The held-out split of patient ``index``: every fifth patient (indices 1, 6, 11, ...) is held out
    (``"test"``), so a split never depends on the cohort size and an extended cohort keeps its files
    where they are. MIMIC-CXR's three splits use :func:`mimic_split`."""
    return "test" if index % 5 == 1 else None


def mimic_split(index: int) -> str:
    """``"test"`` (indices 1, 11, ...), ``"validate"`` (6, 16, ...) or ``"train"``: 10 % / 10 % / 80 %."""
    return {1: "test", 6: "validate"}.get(index % 10, "train")


def _hex_id(*parts: Any, groups: tuple[int, ...] = (32,)) -> str:
    digits = "".join(f"{derive_seed(*parts, k):016x}" for k in range((sum(groups) + 15) // 16))
    out, start = [], 0
    for g in groups:
        out.append(digits[start : start + g])
        start += g
    return "-".join(out)


def siim_uids(seed: int, index: int) -> tuple[str, str, str]:
    """Deterministic ``(study, series, sop instance)`` UIDs in the style of the SIIM-ACR release."""
    stamp = 1517875000 + derive_seed("siim-stamp", seed, index) % 100000
    tail = 1 + derive_seed("siim-tail", seed, index) % 999999
    number = 1000 + index
    return tuple(
        f"{SIIM_UID_ROOT}{kind}.{SIIM_UID_ORG}.{number}.{stamp}.{tail + offset}"
        for offset, kind in enumerate((2, 3, 4))
    )  # type: ignore[return-value]


def mimic_ids(seed: int, index: int) -> tuple[str, str, str]:
    """``(subject_id, study_id, dicom_id)`` in the style of MIMIC-CXR (subjects spread over p10-p19)."""
    subject = 10_000_000 + (index % 10) * 1_000_000 + index // 10 * 7 + derive_seed("mimic-subject", seed) % 5
    study = 50_000_000 + index * 13 + derive_seed("mimic-study", seed, index) % 13  # unique per patient
    dicom = _hex_id("mimic-dicom", seed, index, groups=(8, 8, 8, 8, 8))
    return str(subject), str(study), dicom


# --------------------------------------------------------------------------------------------------
# one patient per layout


def write_patient(layout: str, root: Path, options: XrayExportOptions, index: int) -> dict[str, Any]:
    """Generate radiograph ``index`` and write its files in ``layout`` under ``root``; return its record
    (the JSON that :func:`write_tables` turns into the layout's tables)."""
    from semantic_genesis.phantoms import xray_labels as xl

    if layout not in XRAY_EXPORT_LAYOUTS:
        raise ConfigError(f"unknown X-ray layout {layout!r}; expected one of {', '.join(XRAY_EXPORT_LAYOUTS)}")
    spec, rg = _radiograph(index, options)
    findings = xl.positives(rg.labels)
    record: dict[str, Any] = {
        "index": index, "findings": list(findings), "severity": rg.severity, "sex": rg.sex, "age": spec.age,
        "view": rg.view, "size": [int(rg.image.shape[1]), int(rg.image.shape[0])], "spacing": list(rg.spacing),
    }
    if layout == "chestxray14":
        name = f"{index + 1:08d}_000.png"
        _write_png_or_jpg(rg, root / "images" / name)
        record.update(image=name, labels=list(xl.chestxray14_labels(findings)))
    elif layout == "siim":
        from scipy import ndimage

        from semantic_genesis.io.datasets.rle import rle_encode

        study, series, sop = siim_uids(options.seed, index)
        attributes = {"SOPInstanceUID": sop, "SeriesInstanceUID": series, "StudyInstanceUID": study,
                      "PatientID": f"PHANTOM{index:05d}", **_dicom_demographics(spec, rg)}
        _write_dicom(rg, root / "dicom-images-train" / study / series / f"{sop}.dcm", attributes, modality="CR")
        mask = np.asarray(rg.pneumothorax_mask, dtype=bool)
        record.update(image_id=sop, rles=[rle_encode(part) for part in _mask_parts(mask, ndimage)] or ["-1"])
    elif layout == "chexpert":
        split = "valid" if held_out_split(index) else "train"
        rel = f"{split}/patient{index + 1:05d}/study1/view1_frontal.jpg"
        _write_png_or_jpg(rg, root / rel)
        rng = np.random.default_rng(derive_seed(options.seed, index, "chexpert-report"))
        record.update(split=split, path=f"CheXpert-v1.0-small/{rel}", truth=xl.chexpert_truth(findings),
                      report=xl.chexpert_report_codes(findings, rg.severity, rng))
    elif layout == "mimic_cxr":
        from semantic_genesis.io.datasets.mimic_cxr import mimic_image_path

        subject, study, dicom = mimic_ids(options.seed, index)
        _write_png_or_jpg(rg, mimic_image_path(root, subject, study, dicom))
        rng = np.random.default_rng(derive_seed(options.seed, index, "mimic-report"))
        record.update(split=mimic_split(index), subject_id=subject, study_id=study, dicom_id=dicom,
                      report=xl.chexpert_report_codes(findings, rg.severity, rng))
    elif layout == "vindr_cxr":
        split = held_out_split(index) or "train"
        image_id = _hex_id("vindr", options.seed, index)
        rng = np.random.default_rng(derive_seed(options.seed, index, "vindr-readers"))
        photometric = "MONOCHROME1" if index % 2 else "MONOCHROME2"  # the release has both
        attributes = {"SOPInstanceUID": f"1.2.826.0.1.{derive_seed('vindr-uid', options.seed, index) % 10**12}",
                      "PatientID": image_id[:12], **_dicom_demographics(spec, rg)}
        _write_dicom(rg, root / split / f"{image_id}.dicom", attributes, photometric=photometric)
        record.update(split=split, image_id=image_id, truth=xl.vindr_truth(findings),
                      readings=xl.vindr_readings(findings, rg.severity, rng))
    elif layout == "rsna_pneumonia":
        pid = _hex_id("rsna", options.seed, index, groups=(8, 4, 4, 4, 12))
        attributes = {"SOPInstanceUID": f"1.2.276.0.7230010.3.1.4.{derive_seed('rsna-uid', options.seed, index) % 10**10}",
                      "PatientID": pid, **_dicom_demographics(spec, rg)}
        _write_dicom(rg, root / "stage_2_train_images" / f"{pid}.dcm", attributes, modality="CR")
        boxes = xl.opacity_boxes(rg.finding_masks, tuple(rg.image.shape))
        if xl.rsna_class(findings) == "Lung Opacity" and not boxes:  # an opacity too faint to outline: box its lung
            rows, cols = np.nonzero(rg.masks["lung"])
            boxes = [(int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1)]
        record.update(patient_id=pid, rsna_class=xl.rsna_class(findings), boxes=boxes)
    else:  # shenzhen
        label = int("Tuberculosis" in findings)
        name = f"CHNCXR_{index + 1:04d}_{label}"
        _write_png_or_jpg(rg, root / "ChinaSet_AllFiles" / "CXR_png" / f"{name}.png")
        reading = "PTB in the upper field" if label else "normal"
        write_text(root / "ChinaSet_AllFiles" / "ClinicalReadings" / f"{name}.txt",
                   f"{'male' if rg.sex == 'M' else 'female'} {spec.age}yrs\n{reading}\n")
        record.update(name=name, label=label)
    return record


def _mask_parts(mask: np.ndarray, ndimage: Any, min_fraction: float = 0.1) -> list[np.ndarray]:
    """Split a mask into its large connected components (one SIIM CSV row each, largest first).

    Fragments smaller than ``min_fraction`` of the mask are merged into the largest component, so
    a ragged mask edge does not become a row of its own. Returns ``[]`` for an empty mask.
    """
    components, count = ndimage.label(mask)
    if count == 0:
        return []
    sizes = np.bincount(components.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    parts = [components == (order[0] + 1)]
    for c in order[1:]:
        if sizes[c] >= min_fraction * sizes.sum():
            parts.append(components == (c + 1))
        else:
            parts[0] |= components == (c + 1)
    return parts


# --------------------------------------------------------------------------------------------------
# tables from all records


def _csv_cell(code: int | None) -> str:
    return "" if code is None else f"{float(code):.1f}"


def _write_gz(path: Path, text: str) -> None:
    write_bytes(path, gzip.compress(text.encode("utf-8"), mtime=0))


def write_tables(layout: str, root: Path, options: XrayExportOptions, records: list[dict[str, Any]]) -> tuple[Path, ...]:
    """Write the tables of ``layout`` from the records of all patients (index order); return their paths."""
    if layout == "chestxray14":
        from semantic_genesis.io.datasets.chestxray14 import DATA_ENTRY_HEADER, format_finding_labels

        lines = [DATA_ENTRY_HEADER]
        for r in records:
            lines.append(
                f"{r['image']},{format_finding_labels(r['labels'])},0,{r['index'] + 1},{r['age']},{r['sex']},{r['view']},"
                f"{r['size'][0]},{r['size'][1]},{r['spacing'][1]:.6g},{r['spacing'][0]:.6g},"
            )
        write_text(root / "Data_Entry_2017.csv", "\n".join(lines) + "\n")
        test = [r["image"] for r in records if held_out_split(r["index"])]
        train = [r["image"] for r in records if not held_out_split(r["index"])]
        write_text(root / "train_val_list.txt", "".join(f"{n}\n" for n in train))
        write_text(root / "test_list.txt", "".join(f"{n}\n" for n in test))
        return (root / "Data_Entry_2017.csv", root / "train_val_list.txt", root / "test_list.txt")
    if layout == "siim":
        lines = ["ImageId, EncodedPixels"] + [f"{r['image_id']}, {rle}" for r in records for rle in r["rles"]]
        write_text(root / "train-rle.csv", "\n".join(lines) + "\n")
        return (root / "train-rle.csv",)
    if layout == "chexpert":
        from semantic_genesis.io.datasets.chexpert import CHEXPERT_LABELS, CHEXPERT_META_COLUMNS

        files = []
        for split, key in (("train", "report"), ("valid", "truth")):
            lines = [",".join(CHEXPERT_META_COLUMNS + CHEXPERT_LABELS)]
            for r in (r for r in records if r["split"] == split):
                sex = {"M": "Male", "F": "Female"}[r["sex"]]
                cells = [_csv_cell(r[key][name]) for name in CHEXPERT_LABELS]
                lines.append(f"{r['path']},{sex},{r['age']},Frontal,{r['view']}," + ",".join(cells))
            write_text(root / f"{split}.csv", "\n".join(lines) + "\n")
            files.append(root / f"{split}.csv")
        return tuple(files)
    if layout == "mimic_cxr":
        from semantic_genesis.io.datasets.chexpert import CHEXPERT_LABELS

        names = sorted(CHEXPERT_LABELS)  # the release's alphabetical columns
        labels = ["subject_id,study_id," + ",".join(names)]
        labels += [f"{r['subject_id']},{r['study_id']}," + ",".join(_csv_cell(r["report"][n]) for n in names) for r in records]
        meta = ["dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,StudyTime,"
                "ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning"]
        view_meaning = {"PA": "postero-anterior", "AP": "antero-posterior"}
        for r in records:
            year = 2150 + r["index"] % 30
            meta.append(
                f"{r['dicom_id']},{r['subject_id']},{r['study_id']},CHEST (PORTABLE AP),{r['view']},{r['size'][1]},{r['size'][0]},"
                f"{year}0101,120000.000,CHEST (PORTABLE AP),{view_meaning[r['view']]},Erect"
            )
        split = ["dicom_id,study_id,subject_id,split"] + [f"{r['dicom_id']},{r['study_id']},{r['subject_id']},{r['split']}" for r in records]
        patients = ["subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod"]
        patients += [f"{r['subject_id']},{r['sex']},{r['age']},{2150 + r['index'] % 30},2014 - 2016," for r in records]
        files = []
        for kind, rows in (("chexpert", labels), ("metadata", meta), ("split", split)):
            _write_gz(root / f"mimic-cxr-2.0.0-{kind}.csv.gz", "\n".join(rows) + "\n")
            files.append(root / f"mimic-cxr-2.0.0-{kind}.csv.gz")
        _write_gz(root / "hosp" / "patients.csv.gz", "\n".join(patients) + "\n")
        return (*files, root / "hosp" / "patients.csv.gz")
    if layout == "vindr_cxr":
        from semantic_genesis.io.datasets.vindr_cxr import VINDR_LABELS

        train = ["image_id,rad_id," + ",".join(VINDR_LABELS)]
        test_names = ["Other disease" if n == "Other diseases" else n for n in VINDR_LABELS]  # the release's spelling
        test = ["image_id," + ",".join(test_names)]
        for r in records:
            if r["split"] == "train":
                train += [f"{r['image_id']},{rad}," + ",".join(str(labels[n]) for n in VINDR_LABELS) for rad, labels in r["readings"]]
            else:
                test.append(f"{r['image_id']}," + ",".join(str(r["truth"][n]) for n in VINDR_LABELS))
        write_text(root / "annotations" / "image_labels_train.csv", "\n".join(train) + "\n")
        write_text(root / "annotations" / "image_labels_test.csv", "\n".join(test) + "\n")
        return (root / "annotations" / "image_labels_train.csv", root / "annotations" / "image_labels_test.csv")
    if layout == "rsna_pneumonia":
        labels = ["patientId,x,y,width,height,Target"]
        classes = ["patientId,class"]
        spelled = {"No Lung Opacity/Not Normal": "No Lung Opacity / Not Normal"}  # the release's spelling
        for r in records:
            boxes = r["boxes"] if r["rsna_class"] == "Lung Opacity" else []
            rows = [f"{r['patient_id']},{x:.1f},{y:.1f},{w:.1f},{h:.1f},1" for x, y, w, h in boxes] or [f"{r['patient_id']},,,,,0"]
            labels += rows
            classes += [f"{r['patient_id']},{spelled.get(r['rsna_class'], r['rsna_class'])}"] * len(rows)
        write_text(root / "stage_2_train_labels.csv", "\n".join(labels) + "\n")
        write_text(root / "stage_2_detailed_class_info.csv", "\n".join(classes) + "\n")
        return (root / "stage_2_train_labels.csv", root / "stage_2_detailed_class_info.csv")
    if layout == "shenzhen":
        return ()
    raise ConfigError(f"unknown X-ray layout {layout!r}; expected one of {', '.join(XRAY_EXPORT_LAYOUTS)}")
