"""Chest X-ray classification readers on small files written in each real layout."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest

from semantic_genesis.errors import DataError, DatasetLayoutError
from semantic_genesis.io.datasets import detect_layout, list_scans
from semantic_genesis.io.datasets.chestxray14 import DATA_ENTRY_HEADER, read_chestxray14
from semantic_genesis.io.datasets.chexpert import (
    BLANK,
    CHEXPERT_COMPETITION_LABELS,
    CHEXPERT_LABELS,
    apply_label_policy,
    read_chexpert,
)
from semantic_genesis.io.datasets.cxr import read_labelled_images
from semantic_genesis.io.datasets.mimic_cxr import read_mimic_cxr
from semantic_genesis.io.datasets.rsna_pneumonia import RSNA_CLASSES, read_rsna_pneumonia
from semantic_genesis.io.datasets.shenzhen import parse_clinical_reading, read_shenzhen
from semantic_genesis.io.datasets.vindr_cxr import VINDR_ARK_LABELS, VINDR_LABELS, merge_readings, read_vindr_cxr
from semantic_genesis.io.images2d import Image2D, write_image2d


def _image(path, value=0.5, **kwargs):
    write_image2d(Image2D(np.full((6, 8), value, np.float32), (0.5, 0.5)), path, bits=8, **kwargs)


# --------------------------------------------------------------------------------------------------
# CheXpert

CHEXPERT_HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)


def _chexpert_row(path, sex, age, view, appa, values):
    cells = [values.get(name, "") for name in CHEXPERT_LABELS]
    return f"{path},{sex},{age},{view},{appa}," + ",".join(cells)


def _chexpert(root, rows=None, header=CHEXPERT_HEADER, split="train"):
    rows = rows or [
        ("patient00001/study1/view1_frontal.jpg", "Female", 68, "Frontal", "AP",
         {"No Finding": "", "Cardiomegaly": "1.0", "Edema": "-1.0", "Pleural Effusion": "0.0"}),
        ("patient00001/study1/view2_lateral.jpg", "Female", 68, "Lateral", "",
         {"Cardiomegaly": "1.0", "Edema": "-1.0"}),
        ("patient00002/study3/view1_frontal.jpg", "Unknown", "", "Frontal", "PA", {"No Finding": "1.0", "Atelectasis": "-1.0"}),
    ]
    lines = [header]
    for rel, sex, age, view, appa, values in rows:
        _image(root / split / rel)
        lines.append(_chexpert_row(f"CheXpert-v1.0-small/{split}/{rel}", sex, age, view, appa, values))
    (root / f"{split}.csv").write_text("\n".join(lines) + "\n")


def test_chexpert_policies_views_and_metadata(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    _chexpert(root)
    ds = read_chexpert(root, uncertain="ones")
    col = {n: i for i, n in enumerate(CHEXPERT_LABELS)}
    assert len(ds) == 3 and ds.task == "multi-label" and ds.label_names == CHEXPERT_LABELS
    assert ds.patient_ids == ("patient00001", "patient00001", "patient00002")
    assert ds.sex == ("F", "F", None) and ds.age[0] == 68 and np.isnan(ds.age[2])
    assert ds.views == ("AP", "LATERAL", "PA")
    assert ds.paths[0] == root / "train/patient00001/study1/view1_frontal.jpg"
    assert ds.labels[0, col["Cardiomegaly"]] == 1 and ds.labels[0, col["Edema"]] == 1  # U-Ones
    assert ds.labels[0, col["Pleural Effusion"]] == 0 and ds.labels[0, col["Pneumonia"]] == 0  # 0 and blank -> 0
    assert ds.notes["uncertain_count"] == 3 and ds.extras["codes"][0, col["Pneumonia"]] == BLANK
    zeros = read_chexpert(root, uncertain="zeros")
    assert zeros.labels[0, col["Edema"]] == 0 and zeros.labels[2, col["Atelectasis"]] == 0
    ignore = read_chexpert(root, uncertain="ignore", blank="ignore")
    assert np.isnan(ignore.labels[0, col["Edema"]]) and np.isnan(ignore.labels[0, col["Pneumonia"]])
    assert ignore.labels[0, col["Pleural Effusion"]] == 0 and ignore.labels[0, col["Cardiomegaly"]] == 1
    frontal = read_chexpert(root, views="frontal")
    assert frontal.views == ("AP", "PA") and read_chexpert(root, views="lateral").views == ("LATERAL",)
    five = frontal.restrict_labels(CHEXPERT_COMPETITION_LABELS)
    assert five.label_names == ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
    assert five.num_classes == 5 and five.labels.shape == (2, 5)


def test_chexpert_label_smoothing_ranges_and_determinism(tmp_path):
    codes = np.full((200, 3), -1)
    codes[:, 2] = BLANK
    keys = [f"img{i}" for i in range(200)]
    ones = apply_label_policy(codes, "lsr_ones", seed=1, keys=keys)
    zeros = apply_label_policy(codes, "lsr_zeros", seed=1, keys=keys)
    assert ones[:, :2].min() >= 0.55 and ones[:, :2].max() <= 0.85 and ones[:, :2].std() > 0.05
    assert zeros[:, :2].min() >= 0.0 and zeros[:, :2].max() <= 0.3 and zeros[:, :2].std() > 0.03
    assert np.all(ones[:, 2] == 0)  # blank -> 0
    np.testing.assert_array_equal(ones, apply_label_policy(codes, "lsr_ones", seed=1, keys=keys))
    # a draw depends on (seed, key, column), not on the row's position
    np.testing.assert_array_equal(apply_label_policy(codes[::-1], "lsr_ones", seed=1, keys=keys[::-1]), ones[::-1])
    assert not np.array_equal(apply_label_policy(codes, "lsr_ones", seed=2, keys=keys), ones)
    with pytest.raises(DataError, match="unknown uncertain-label policy 'maybe'"):
        apply_label_policy(codes, "maybe")
    root = tmp_path / "cx"
    _chexpert(root)
    lsr = read_chexpert(root)  # default LSR-Ones, as Ark
    assert lsr.notes["uncertain"] == "lsr_ones" and lsr.notes["lsr_range"] == [0.55, 0.85]
    assert 0.55 <= lsr.labels[0, CHEXPERT_LABELS.index("Edema")] <= 0.85


def test_chexpert_bad_input(tmp_path):
    root = tmp_path / "cx"
    _chexpert(root, header=CHEXPERT_HEADER.replace("Fracture", "Pneumonitis"))
    with pytest.raises(DataError, match=r"train\.csv: unknown label column 'Pneumonitis'"):
        read_chexpert(root)
    _chexpert(root, rows=[("patient00009/study1/view1_frontal.jpg", "Male", 50, "Frontal", "PA", {"Edema": "2"})])
    with pytest.raises(DataError, match=r"train\.csv row 2 column 'Edema': label value '2' is not one of"):
        read_chexpert(root)
    _chexpert(root)
    (root / "train/patient00002/study3/view1_frontal.jpg").unlink()
    with pytest.raises(DataError, match=r"train\.csv row 4: image 'CheXpert-v1\.0-small/train/patient00002/.*' not found at"):
        read_chexpert(root)
    with pytest.warns(UserWarning, match="skipped 1 rows"):
        assert len(read_chexpert(root, strict=False)) == 2
    (root / "train.csv").write_text("Path,Sex\n")
    with pytest.raises(DatasetLayoutError, match=r"train\.csv has no column 'Age'"):
        read_chexpert(root)
    with pytest.raises(DatasetLayoutError, match="valid.csv not found"):
        read_chexpert(root, split="valid")
    with pytest.raises(DataError, match="views must be one of"):
        read_chexpert(root, views="oblique")


# --------------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG

MIMIC_LABELS = sorted(CHEXPERT_LABELS)


def _mimic(root, gz=True, extra_label_col=""):
    images = [  # dicom, subject, study, view, split
        ("d1", "10000032", "50414267", "PA", "train"),
        ("d2", "10000032", "50414267", "LATERAL", "train"),
        ("d3", "10000032", "53189527", "AP", "validate"),
        ("d4", "11000011", "51000000", "AP", "test"),
        ("d5", "11000011", "52000000", "PA", "train"),  # study without a label row
    ]
    for dicom, subject, study, _, _ in images:
        _image(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg")
    header = "subject_id,study_id," + ",".join(MIMIC_LABELS) + extra_label_col
    studies = {"50414267": {"Edema": "-1.0", "Lung Opacity": "1.0"}, "53189527": {"No Finding": "1.0"}, "51000000": {"Pneumonia": "0.0"}}
    label_rows = [header] + [
        f"{'10000032' if s != '51000000' else '11000011'},{s}," + ",".join(v.get(n, "") for n in MIMIC_LABELS)
        for s, v in studies.items()
    ]
    meta = ["dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate"]
    meta += [f"{d},{sub},{st},CHEST (PA AND LAT),{v},6,8,{2180 + i}0101" for i, (d, sub, st, v, _) in enumerate(images)]
    split = ["dicom_id,study_id,subject_id,split"] + [f"{d},{st},{sub},{sp}" for d, sub, st, _, sp in images]
    for kind, rows in (("chexpert", label_rows), ("metadata", meta), ("split", split)):
        text = "\n".join(rows) + "\n"
        if gz:
            (root / f"mimic-cxr-2.0.0-{kind}.csv.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (root / f"mimic-cxr-2.0.0-{kind}.csv").write_text(text)


def test_mimic_cxr_layout_splits_views_and_labels(tmp_path):
    _mimic(tmp_path)
    train = read_mimic_cxr(tmp_path)  # Ark default: U-Ones
    assert train.image_ids == ("d1", "d2") and train.notes["images_without_labels"] == 1  # d5 skipped
    assert train.label_names == tuple(MIMIC_LABELS)  # names from the header, alphabetical
    assert train.paths[0] == tmp_path / "files/p10/p10000032/s50414267/d1.jpg"
    assert train.views == ("PA", "LATERAL") and train.extras["study_id"] == ("50414267", "50414267")
    edema = MIMIC_LABELS.index("Edema")
    assert train.labels[:, edema].tolist() == [1, 1] and train.labels[:, MIMIC_LABELS.index("Lung Opacity")].tolist() == [1, 1]
    assert train.labels[0].sum() == 2 and train.sex is None and train.age is None
    assert read_mimic_cxr(tmp_path, uncertain="zeros").labels[0, edema] == 0
    assert read_mimic_cxr(tmp_path, split="valid").image_ids == ("d3",)
    assert read_mimic_cxr(tmp_path, split="all", views="frontal").image_ids == ("d1", "d3", "d4")
    assert read_mimic_cxr(tmp_path, split="all", views=("AP",)).image_ids == ("d3", "d4")
    unknown = read_mimic_cxr(tmp_path, missing_labels="unknown")
    assert unknown.image_ids == ("d1", "d2", "d5") and np.isnan(unknown.labels[2]).all()
    (tmp_path / "hosp").mkdir()
    (tmp_path / "hosp/patients.csv").write_text(
        "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n10000032,F,52,2180,2014 - 2016,\n11000011,M,40,2180,,\n"
    )
    demo = read_mimic_cxr(tmp_path, split="all", patients=tmp_path / "hosp/patients.csv")
    assert demo.sex == ("F", "F", "F", "M") and demo.age.tolist() == [52, 53, 54, 43]
    _mimic(tmp_path / "plain", gz=False)
    assert read_mimic_cxr(tmp_path / "plain").image_ids == ("d1", "d2")


def test_mimic_cxr_bad_input(tmp_path):
    _mimic(tmp_path, extra_label_col=",Flu")
    with pytest.raises(DataError, match=r"chexpert\.csv\.gz: unknown label column 'Flu'"):
        read_mimic_cxr(tmp_path)
    _mimic(tmp_path)
    (tmp_path / "files/p10/p10000032/s50414267/d2.jpg").unlink()
    with pytest.raises(DataError, match=r"metadata\.csv\.gz row 3: image 'd2' not found at .*d2\.jpg"):
        read_mimic_cxr(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 images"):
        assert read_mimic_cxr(tmp_path, strict=False).image_ids == ("d1",)
    (tmp_path / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(DatasetLayoutError, match="MIMIC-CXR-JPG split table not found"):
        read_mimic_cxr(tmp_path)
    with pytest.raises(DataError, match="split must be one of"):
        read_mimic_cxr(tmp_path, split="dev")


# --------------------------------------------------------------------------------------------------
# VinDr-CXR


def _vindr_row(image_id, rad, positives, columns=VINDR_LABELS):
    cells = ["1" if n in positives else "0" for n in columns]
    return f"{image_id},{rad}," + ",".join(cells) if rad is not None else f"{image_id}," + ",".join(cells)


def _vindr(root, rad_column="rad_id", suffix=".dicom"):
    readings = {
        "img_a": [("R1", {"Pleural effusion"}), ("R2", {"Pleural effusion", "Cardiomegaly"}), ("R3", {"No finding"})],
        "img_b": [("R1", {"No finding"}), ("R4", {"No finding"}), ("R5", {"Nodule/Mass", "Lung tumor"})],
        "img_c": [("R2", {"Pneumonia"}), ("R3", {"Pneumonia"}), ("R6", {"Pneumonia"})],
    }
    lines = [f"image_id,{rad_column}," + ",".join(VINDR_LABELS)]
    for image_id, reads in readings.items():
        _image(root / "train" / f"{image_id}{suffix}", modality="DX") if suffix in (".dicom", ".dcm") else _image(root / "train" / f"{image_id}{suffix}")
        lines += [_vindr_row(image_id, rad, pos) for rad, pos in reads]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations/image_labels_train.csv").write_text("\n".join(lines) + "\n")
    test_columns = [("Other disease" if n == "Other diseases" else n) for n in VINDR_LABELS]
    _image(root / "test" / "img_t.dicom", modality="DX")
    (root / "annotations/image_labels_test.csv").write_text(
        "image_id," + ",".join(test_columns) + "\n" + _vindr_row("img_t", None, {"Other disease", "Edema"}, test_columns) + "\n"
    )


def test_vindr_merge_rules(tmp_path):
    col = {n: i for i, n in enumerate(VINDR_LABELS)}
    _vindr(tmp_path)
    majority = read_vindr_cxr(tmp_path)
    assert majority.image_ids == ("img_a", "img_b", "img_c") and majority.paths[0].suffix == ".dicom"
    assert majority.notes["merge"] == "majority" and majority.extras["radiologists"] == (3, 3, 3)
    pos = lambda s, i: {n for n in VINDR_LABELS if s.labels[i, col[n]] == 1}  # noqa: E731
    assert pos(majority, 0) == {"Pleural effusion"} and pos(majority, 1) == {"No finding"} and pos(majority, 2) == {"Pneumonia"}
    union = read_vindr_cxr(tmp_path, merge="any")
    # union: every finding any radiologist saw; "No finding" cleared where something was seen
    assert pos(union, 0) == {"Pleural effusion", "Cardiomegaly"} and pos(union, 1) == {"Nodule/Mass", "Lung tumor"}
    assert pos(read_vindr_cxr(tmp_path, merge="all"), 0) == set()
    mean = read_vindr_cxr(tmp_path, merge="mean")
    assert mean.labels[0, col["Pleural effusion"]] == pytest.approx(2 / 3) and mean.labels[1, col["No finding"]] == pytest.approx(2 / 3)
    ark = read_vindr_cxr(tmp_path, labels="ark")
    assert ark.label_names == VINDR_ARK_LABELS and ark.labels[:, 0].tolist() == [1, 0, 0]
    test = read_vindr_cxr(tmp_path, split="test")  # consensus table, "Other disease" spelling
    assert test.notes["merge"] == "consensus" and pos(test, 0) == {"Other diseases", "Edema"}
    votes = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert merge_readings(votes, "majority").tolist() == [1, 0, 0]
    assert merge_readings(votes, "any", no_finding=2).tolist() == [1, 1, 0]
    with pytest.raises(DataError, match="unknown radiologist merge rule 'vote'"):
        read_vindr_cxr(tmp_path, merge="vote")


def test_vindr_bad_input(tmp_path):
    _vindr(tmp_path, rad_column="rad_ID", suffix=".png")
    assert read_vindr_cxr(tmp_path).paths[0].suffix == ".png"  # rad_ID spelling and converted images accepted
    lines = (tmp_path / "annotations/image_labels_train.csv").read_text().splitlines()
    (tmp_path / "annotations/image_labels_train.csv").write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(DataError, match=r"image_labels_train\.csv row 11: image 'img_a' has a second row for radiologist 'R1'"):
        read_vindr_cxr(tmp_path)
    (tmp_path / "annotations/image_labels_train.csv").write_text("\n".join(lines[:2] + [lines[2].replace(",0,", ",x,", 1)]) + "\n")
    with pytest.raises(DataError, match=r"row 3 column .*: label value 'x' is not 0 or 1"):
        read_vindr_cxr(tmp_path)
    (tmp_path / "annotations/image_labels_train.csv").write_text(lines[0].replace("ILD", "Fibrosis") + "\n")
    with pytest.raises(DataError, match="unknown label column 'Fibrosis'"):
        read_vindr_cxr(tmp_path)
    (tmp_path / "annotations/image_labels_train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "train/img_b.png").unlink()
    with pytest.raises(DataError, match=r"image_labels_train\.csv row 5: image 'img_b' not found"):
        read_vindr_cxr(tmp_path)


# --------------------------------------------------------------------------------------------------
# RSNA Pneumonia


def _rsna(root, label_rows=None, class_rows=None):
    for pid in ("aaa", "bbb", "ccc"):
        _image(root / "stage_2_train_images" / f"{pid}.dcm", modality="CR")
    label_rows = label_rows or ["aaa,264.0,152.0,213.0,379.0,1", "aaa,562.0,152.0,256.0,453.0,1", "bbb,,,,,0", "ccc,,,,,0"]
    class_rows = class_rows or ["aaa,Lung Opacity", "aaa,Lung Opacity", "bbb,No Lung Opacity / Not Normal", "ccc,Normal"]
    (root / "stage_2_train_labels.csv").write_text("patientId,x,y,width,height,Target\n" + "\n".join(label_rows) + "\n")
    (root / "stage_2_detailed_class_info.csv").write_text("patientId,class\n" + "\n".join(class_rows) + "\n")


def test_rsna_binary_three_class_and_boxes(tmp_path):
    _rsna(tmp_path)
    binary = read_rsna_pneumonia(tmp_path)
    assert binary.task == "binary" and binary.label_names == ("Pneumonia",) and binary.image_ids == ("aaa", "bbb", "ccc")
    assert binary.labels[:, 0].tolist() == [1, 0, 0]
    assert binary.extras["boxes"][0] == ((264.0, 152.0, 213.0, 379.0), (562.0, 152.0, 256.0, 453.0)) and binary.extras["boxes"][1] == ()
    three = read_rsna_pneumonia(tmp_path, variant="3class")
    assert three.task == "multi-class" and three.label_names == RSNA_CLASSES
    assert three.class_indices().tolist() == [2, 1, 0]


def test_rsna_bad_input(tmp_path):
    _rsna(tmp_path, label_rows=["aaa,1,2,3,4,1", "aaa,,,,,0"])
    with pytest.raises(DataError, match=r"stage_2_train_labels\.csv row 3: Target 0 disagrees"):
        read_rsna_pneumonia(tmp_path)
    _rsna(tmp_path, class_rows=["aaa,Normal", "bbb,Normal", "ccc,Normal"])
    with pytest.raises(DataError, match=r"detailed_class_info\.csv row 2: class 'Normal' contradicts Target 1"):
        read_rsna_pneumonia(tmp_path, variant="3class")
    _rsna(tmp_path, class_rows=["aaa,Lung Opacity", "bbb,Abnormal", "ccc,Normal"])
    with pytest.raises(DataError, match=r"row 3: unknown class 'Abnormal'"):
        read_rsna_pneumonia(tmp_path, variant="3class")
    _rsna(tmp_path, label_rows=["aaa,1,2,3,4,1", "bbb,5,5,5,5,0", "ccc,,,,,0"])
    with pytest.raises(DataError, match="row 3: a Target 0 row has a box"):
        read_rsna_pneumonia(tmp_path)
    _rsna(tmp_path, label_rows=["aaa,1,2,3,4,1", "bbb,,,,,0", "ccc,,,,,0", "ddd,,,,,0"])
    with pytest.raises(DataError, match=r"row 5: image 'ddd' not found"):
        read_rsna_pneumonia(tmp_path)


# --------------------------------------------------------------------------------------------------
# Shenzhen


def test_shenzhen_labels_from_file_names(tmp_path):
    folder = tmp_path / "ChinaSet_AllFiles" / "CXR_png"
    for name in ("CHNCXR_0001_0.png", "CHNCXR_0002_1.png", "CHNCXR_0003_1.png"):
        _image(folder / name)
    readings = tmp_path / "ChinaSet_AllFiles" / "ClinicalReadings"
    readings.mkdir()
    (readings / "CHNCXR_0001_0.txt").write_text("male 45yrs\nnormal\n")
    (readings / "CHNCXR_0002_1.txt").write_text("Female, 32 yrs\nPTB in the left upper field\n")
    ds = read_shenzhen(tmp_path)
    assert ds.task == "binary" and ds.label_names == ("Tuberculosis",) and ds.labels[:, 0].tolist() == [0, 1, 1]
    assert ds.patient_ids == ("0001", "0002", "0003") and ds.sex == ("M", "F", None)
    assert ds.age[:2].tolist() == [45, 32] and np.isnan(ds.age[2])
    assert parse_clinical_reading("female 11month\n") == ("F", pytest.approx(np.nan, nan_ok=True))
    _image(folder / "CHNCXR_0004_2.png")
    with pytest.raises(DataError, match=r"CHNCXR_0004_2\.png: file name 'CHNCXR_0004_2\.png' does not follow"):
        read_shenzhen(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 PNG"):
        assert len(read_shenzhen(tmp_path, strict=False)) == 3
    with pytest.raises(DatasetLayoutError, match="no Shenzhen images"):
        read_shenzhen(tmp_path / "ChinaSet_AllFiles" / "ClinicalReadings")


# --------------------------------------------------------------------------------------------------
# ChestX-ray14 splits, dispatch and layout detection


def test_chestxray14_patient_disjoint_validation(tmp_path):
    lines, names = [DATA_ENTRY_HEADER], []
    for pid in range(1, 21):
        for follow in range(2):
            name = f"{pid:08d}_{follow:03d}.png"
            _image(tmp_path / "images" / name)
            lines.append(f"{name},{'Nodule' if pid % 3 == 0 else 'No Finding'},{follow},{pid},50,{'MF'[pid % 2]},PA,8,6,0.1,0.1,")
            names.append(name)
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "train_val_list.txt").write_text("\n".join(names[:32]) + "\n")
    (tmp_path / "test_list.txt").write_text("\n".join(names[32:]) + "\n")
    train_val = read_chestxray14(tmp_path, "train_val")
    train = read_chestxray14(tmp_path, "train", val_fraction=0.25)
    val = read_chestxray14(tmp_path, "val", val_fraction=0.25)
    test = read_chestxray14(tmp_path, "test")
    assert len(set(val.patient_ids)) == 4 and len(train) + len(val) == len(train_val) == 32
    assert set(train.image_ids) | set(val.image_ids) == set(train_val.image_ids)
    for a, b in ((train, val), (train, test), (val, test)):
        assert not set(a.patient_ids) & set(b.patient_ids)
    assert train_val.sex[0] == "F" and train_val.views[0] == "PA" and train_val.labels.shape == (32, 14)
    assert read_chestxray14(tmp_path, "val", val_fraction=0.25, val_seed=1).image_ids != val.image_ids
    assert read_labelled_images("chestxray14", tmp_path, "test").image_ids == test.image_ids


def test_dispatch_and_layout_detection(tmp_path):
    _chexpert(tmp_path / "cx")
    _mimic(tmp_path / "mimic")
    _vindr(tmp_path / "vindr")
    _rsna(tmp_path / "rsna")
    _image(tmp_path / "sz" / "CXR_png" / "CHNCXR_0001_1.png")
    expected = {"cx": "chexpert", "mimic": "mimic_cxr", "vindr": "vindr_cxr", "rsna": "rsna_pneumonia", "sz": "shenzhen"}
    for folder, layout in expected.items():
        assert detect_layout(tmp_path / folder) == layout
        refs = list_scans(tmp_path / folder)
        assert refs and all(r.modality == "xray" and r.path.is_file() for r in refs)
        assert len({r.patient_id for r in refs}) == len(refs)
        assert len(read_labelled_images(layout, tmp_path / folder)) > 0
    assert len(list_scans(tmp_path / "mimic")) == 5 and len(list_scans(tmp_path / "vindr")) == 4
    assert read_labelled_images("chexpert", tmp_path / "cx", uncertain="zeros").notes["uncertain"] == "zeros"
    with pytest.raises(DataError, match="unknown chest X-ray layout 'padchest'"):
        read_labelled_images("padchest", tmp_path)
    with pytest.raises(DataError, match="unknown option 'policy' for the chexpert reader; valid options: uncertain, blank"):
        read_labelled_images("chexpert", tmp_path / "cx", policy="ones")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_labelled_images("rsna_pneumonia", tmp_path / "rsna", variant="3class")


@pytest.mark.parametrize("layout", ["chestxray14", "chexpert", "mimic_cxr", "vindr_cxr", "rsna_pneumonia", "shenzhen"])
def test_empty_or_missing_folder_is_a_one_line_error(tmp_path, layout):
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(DataError) as info:
            read_labelled_images(layout, root)
        message = str(info.value)
        assert "\n" not in message and str(root.resolve()) in message
