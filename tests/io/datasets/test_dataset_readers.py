"""Dataset readers on small handmade folders: layouts, voxel mapping, and bad-input messages."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from semantic_genesis.errors import DataError, DatasetLayoutError
from semantic_genesis.io.datasets import ScanRef, detect_layout, list_scans
from semantic_genesis.io.datasets.brats import BratsDataset
from semantic_genesis.io.datasets.chestxray14 import (
    CHESTXRAY14_LABELS,
    DATA_ENTRY_HEADER,
    ChestXray14Dataset,
    format_finding_labels,
    parse_finding_labels,
)
from semantic_genesis.io.datasets.lits import LitsDataset
from semantic_genesis.io.datasets.luna16 import Luna16Dataset
from semantic_genesis.io.datasets.native import NativeCohort
from semantic_genesis.io.datasets.siim_acr import SiimAcrDataset
from semantic_genesis.io.images2d import Image2D, write_image2d
from semantic_genesis.io.volumes import Volume, write_volume

UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.111"


def _ct(shape=(10, 12, 6), origin=(-100.0, -50.0, -200.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 1000
    return Volume(array, (0.7, 0.8, 2.5), origin, direction, {"modality": "ct"})


def _luna(tmp_path, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), candidates_extra=""):
    volume = _ct(direction=direction)
    write_volume(volume, tmp_path / "subset3" / f"{UID}.mhd", dtype="int16")
    ijk = np.array([3.0, 7.0, 2.0])
    world = [float(w) for w in volume.voxel_to_world(ijk)]
    other = [float(w) for w in volume.voxel_to_world((1.0, 1.0, 1.0))]
    (tmp_path / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n" + f"{UID},{world[0]!r},{world[1]!r},{world[2]!r},6.5\n"
    )
    (tmp_path / "candidates.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,class\n"
        + f"{UID},{world[0]!r},{world[1]!r},{world[2]!r},1\n"
        + f"{UID},{other[0]!r},{other[1]!r},{other[2]!r},0\n"
        + candidates_extra
    )
    return volume, ijk


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (0, -1, 0, 1, 0, 0, 0, 0, 1)])
def test_luna16_world_to_voxel_exact(tmp_path, direction):
    volume, ijk = _luna(tmp_path, direction=direction)
    ds = Luna16Dataset(tmp_path)
    assert ds.series_ids() == [UID] and len(ds) == 1
    scan = ds.load(UID)
    assert scan.subset == "subset3"
    assert scan.volume.array.shape == (10, 12, 6)
    np.testing.assert_allclose(scan.spacing, (0.7, 0.8, 2.5), rtol=1e-6)
    (center, diameter), = scan.annotations
    np.testing.assert_allclose(center, ijk, atol=1e-5)
    assert diameter == 6.5
    assert [c.label for c in scan.candidates] == [1, 0]
    np.testing.assert_allclose(scan.candidates[0].center_vox, ijk, atol=1e-5)
    # the voxel at the annotated point is the one we put there (values encode the flat index)
    i, j, k = np.rint(center).astype(int)
    assert scan.volume.array[i, j, k] == volume.array[3, 7, 2]


def test_luna16_missing_csv_and_column(tmp_path):
    _luna(tmp_path)
    (tmp_path / "candidates.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=r"candidates\.csv not found"):
        Luna16Dataset(tmp_path)
    (tmp_path / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ\n")
    with pytest.raises(DatasetLayoutError, match=r"candidates\.csv.*no column 'class'"):
        Luna16Dataset(tmp_path)


def test_luna16_no_subsets(tmp_path):
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    with pytest.raises(DatasetLayoutError, match="subset0"):
        Luna16Dataset(tmp_path)


def test_luna16_candidate_row_for_missing_series(tmp_path):
    _luna(tmp_path, candidates_extra="1.2.3.999,1.0,2.0,3.0,0\n")
    with pytest.raises(DataError, match=r"candidates\.csv row 4: seriesuid '1\.2\.3\.999'"):
        Luna16Dataset(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 rows"):
        ds = Luna16Dataset(tmp_path, strict=False)
    assert len(ds.load(UID).candidates) == 2


def test_luna16_bad_number_names_row(tmp_path):
    _luna(tmp_path, candidates_extra=f"{UID},abc,2.0,3.0,0\n")
    with pytest.raises(DataError, match=r"row 4: column 'coordX' should be a number, got 'abc'"):
        Luna16Dataset(tmp_path)


def test_lits_pairs_and_mask_shape_mismatch(tmp_path):
    volume = _ct()
    seg = np.zeros(volume.shape, dtype=np.uint8)
    seg[2:5, 3:6, 1:4] = 1
    seg[3, 4, 2] = 2
    write_volume(volume, tmp_path / "batch1" / "volume-7.nii", dtype="int16")
    write_volume(volume.with_array(seg), tmp_path / "batch1" / "segmentation-7.nii", dtype="uint8")
    ds = LitsDataset(tmp_path)
    assert ds.case_ids() == [7]
    case = ds.load(7)
    np.testing.assert_array_equal(case.mask, seg)
    assert case.mask.dtype == np.uint8 and case.liver_mask().sum() == 27
    np.testing.assert_allclose(case.spacing, (0.7, 0.8, 2.5), rtol=1e-6)
    np.testing.assert_array_equal(case.volume.array, volume.array)
    small = Volume(np.zeros((10, 12, 5), np.float32), volume.spacing)
    write_volume(small, tmp_path / "batch1" / "segmentation-7.nii", dtype="uint8")
    with pytest.raises(DataError, match=r"segmentation-7\.nii has shape \(10, 12, 5\).*volume-7\.nii has shape \(10, 12, 6\)"):
        LitsDataset(tmp_path).load(7)


def test_lits_missing_segmentation(tmp_path):
    write_volume(_ct(), tmp_path / "volume-0.nii", dtype="int16")
    with pytest.raises(DatasetLayoutError, match=r"segmentation-0\.nii.*not found"):
        LitsDataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no LiTS 'volume-<i>.nii' files"):
        LitsDataset(tmp_path / "empty")


def _brats(tmp_path, pid="Brats18_X_1", seg_values=(0, 1, 2, 4), skip=()):
    folder = tmp_path / "HGG" / pid
    base = Volume(np.zeros((8, 9, 7), np.float32), (1.0, 1.0, 1.0))
    for i, m in enumerate(("flair", "t1", "t1ce", "t2")):
        if m not in skip:
            write_volume(base.with_array(np.full((8, 9, 7), 100.0 * (i + 1))), folder / f"{pid}_{m}.nii.gz", dtype="int16")
    seg = np.zeros((8, 9, 7), np.uint8)
    for n, v in enumerate(seg_values):
        seg[n, 0, 0] = v
    write_volume(base.with_array(seg), folder / f"{pid}_seg.nii.gz", dtype="uint8")
    return seg


def test_brats_reader_regions_and_errors(tmp_path):
    seg = _brats(tmp_path)
    ds = BratsDataset(tmp_path)
    assert ds.patient_ids() == ["Brats18_X_1"]
    case = ds.load("Brats18_X_1")
    image = case.image()
    assert image.shape == (4, 8, 9, 7) and image.dtype == np.float32
    np.testing.assert_array_equal(image[:, 0, 0, 0], [100, 200, 300, 400])
    np.testing.assert_array_equal(case.seg, seg)
    regions = case.regions()
    assert regions["whole_tumor"].sum() == 3 and regions["tumor_core"].sum() == 2 and regions["enhancing_tumor"].sum() == 1
    _brats(tmp_path, pid="Brats18_Y_1", skip=("t1ce",))
    with pytest.raises(DatasetLayoutError, match=r"Brats18_Y_1_t1ce\.nii\.gz.*t1ce file of patient Brats18_Y_1 not found"):
        BratsDataset(tmp_path)


def test_brats_bad_labels(tmp_path):
    _brats(tmp_path, seg_values=(0, 3))
    with pytest.raises(DataError, match=r"labels must be 0, 1, 2, 4; found \[3\]"):
        BratsDataset(tmp_path).load("Brats18_X_1")


def test_finding_labels_parse_and_format():
    v = parse_finding_labels("Effusion|Nodule")
    assert v.shape == (14,) and v.sum() == 2 and v[CHESTXRAY14_LABELS.index("Nodule")] == 1
    assert parse_finding_labels("No Finding").sum() == 0
    assert format_finding_labels(v) == "Effusion|Nodule"
    assert format_finding_labels(["Nodule", "Effusion"]) == "Effusion|Nodule"
    assert format_finding_labels([]) == "No Finding"
    with pytest.raises(DataError, match="unknown finding 'Flu'"):
        parse_finding_labels("Flu|Nodule")


def _cxr(tmp_path, header=DATA_ENTRY_HEADER):
    for pid in (1, 2):
        img = Image2D(np.full((20, 30), 0.5 * pid, np.float32), (0.5, 0.5))
        write_image2d(img, tmp_path / "images" / f"{pid:08d}_000.png", bits=8)
    (tmp_path / "Data_Entry_2017.csv").write_text(
        header + "\n"
        "00000001_000.png,Cardiomegaly|Effusion,0,1,058,M,PA,2000,3000,0.143,0.143\n"
        "00000002_000.png,No Finding,0,2,40,F,AP,30,20,0.2,0.2,\n"
    )
    (tmp_path / "train_val_list.txt").write_text("00000001_000.png\n")
    (tmp_path / "test_list.txt").write_text("00000002_000.png\n")


def test_chestxray14_reader(tmp_path):
    _cxr(tmp_path)
    train = ChestXray14Dataset(tmp_path, "train_val")
    test = ChestXray14Dataset(tmp_path, "test")
    assert len(train) == 1 and len(test) == 1 and len(ChestXray14Dataset(tmp_path, "all")) == 2
    s = train[0]
    assert s.image.shape == (20, 30) and s.image.max() == pytest.approx(128 / 255)
    assert s.labels.tolist() == [0, 1, 1] + [0] * 11
    assert s.record.age == 58 and s.record.gender == "M" and s.record.patient_id == 1
    # original 2000 x 3000 at 0.143 mm, resized to 30 x 20: spacing scales with the size ratio
    np.testing.assert_allclose(s.spacing, (0.143 * 3000 / 20, 0.143 * 2000 / 30))
    t = test[0]
    assert t.labels.sum() == 0 and t.image.max() == 1.0
    np.testing.assert_allclose(t.spacing, (0.2, 0.2))
    np.testing.assert_array_equal(test.patient_ids(), [2])


def test_chestxray14_errors(tmp_path):
    _cxr(tmp_path, header="Image Index,Finding Labels,Follow-up #")
    with pytest.raises(DatasetLayoutError, match=r"Data_Entry_2017\.csv.*no column 'Patient ID'"):
        ChestXray14Dataset(tmp_path)
    _cxr(tmp_path)
    (tmp_path / "test_list.txt").write_text("00000009_000.png\n")
    with pytest.raises(DataError, match=r"test_list\.txt: image '00000009_000\.png' is not on disk"):
        ChestXray14Dataset(tmp_path, "test")
    (tmp_path / "test_list.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"test_list\.txt not found"):
        ChestXray14Dataset(tmp_path, "test")


def _siim(tmp_path, rows):
    image = Image2D(np.linspace(0, 1, 6 * 5, dtype=np.float32).reshape(6, 5), (0.14, 0.15))
    write_image2d(image, tmp_path / "dicom-images-train" / "1.2.3" / "1.2.4" / "1.2.5.dcm", bits=8,
                  modality="CR", attributes={"SOPInstanceUID": "1.2.5"})
    (tmp_path / "train-rle.csv").write_text("ImageId, EncodedPixels\n" + "".join(f"{r}\n" for r in rows))


def test_siim_union_of_rows_and_spacing(tmp_path):
    _siim(tmp_path, ["1.2.5, 1 2", "1.2.5, 10 3"])  # column-major flat pixels 1-2 and 10-12
    ds = SiimAcrDataset(tmp_path)
    assert ds.image_ids() == ["1.2.5"] and ds.has_pneumothorax().tolist() == [True]
    s = ds[0]
    assert s.image.shape == (6, 5) and s.image.min() == 0 and s.image.max() == 1
    np.testing.assert_allclose(s.spacing, (0.14, 0.15))
    flat = np.zeros(30, bool)
    flat[[1, 2, 10, 11, 12]] = True  # each row is its own RLE
    np.testing.assert_array_equal(s.mask, flat.reshape(5, 6).T)
    assert s.has_pneumothorax


def test_siim_errors(tmp_path):
    _siim(tmp_path, ["1.2.5, 20 20"])
    with pytest.raises(DataError, match=r"train-rle\.csv row 2: run-length encoding overruns"):
        SiimAcrDataset(tmp_path)[0]
    _siim(tmp_path, ["1.2.5, -1", "9.9.9, -1"])
    with pytest.raises(DataError, match=r"train-rle\.csv row 3: ImageId '9\.9\.9'"):
        SiimAcrDataset(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = SiimAcrDataset(tmp_path, strict=False)
    assert not ds[0].mask.any() and ds.has_pneumothorax().tolist() == [False]
    (tmp_path / "train-rle.csv").write_text("ImageId,Mask\n")
    with pytest.raises(DatasetLayoutError, match="no column 'EncodedPixels'"):
        SiimAcrDataset(tmp_path)


def test_list_scans_layouts(tmp_path):
    _luna(tmp_path / "luna")
    assert list_scans(tmp_path / "luna") == [ScanRef(UID, tmp_path / "luna" / "subset3" / f"{UID}.mhd", "ct")]
    _brats(tmp_path / "brats")
    (ref,) = list_scans(tmp_path / "brats")
    assert ref.patient_id == "Brats18_X_1" and ref.modality == "mri" and ref.path.name.endswith("_flair.nii.gz")
    generic = tmp_path / "generic"
    write_volume(_ct(), generic / "b.nii.gz")
    write_volume(_ct(), generic / "a.npy")
    (generic / "notes.txt").write_text("x")
    assert detect_layout(generic) == "generic"
    refs = list_scans(generic)
    assert [r.patient_id for r in refs] == ["a", "b"] and refs[0].modality == "ct"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="empty: no scans found: the folder is empty"):
        list_scans(tmp_path / "empty")
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match="no scans found"):
        list_scans(tmp_path / "empty")
    with pytest.raises(DatasetLayoutError, match="no such file"):
        list_scans(tmp_path / "missing")


def test_native_cohort_reader(tmp_path):
    volume = _ct()
    labels = np.zeros(volume.shape, np.uint8)
    labels[1:3] = 2
    write_volume(volume, tmp_path / "images" / "p0.nii.gz", dtype="int16")
    write_volume(volume.with_array(labels), tmp_path / "labels" / "p0.nii.gz", dtype="uint8")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "p0.json").write_text('{"label_names": {"lung": 2}}')
    (tmp_path / "cohort.json").write_text('{"modality": "ct"}')
    cohort = NativeCohort(tmp_path)
    assert cohort.patient_ids() == ["p0"] and cohort.modality == "ct"
    case = cohort.load("p0")
    np.testing.assert_array_equal(case.image.array, volume.array)
    np.testing.assert_array_equal(case.labels, labels)
    assert case.label_names == {"lung": 2}
    assert list_scans(tmp_path) == [ScanRef("p0", tmp_path / "images" / "p0.nii.gz", "ct")]
    write_volume(Volume(np.zeros((3, 3, 3), np.float32)), tmp_path / "labels" / "p0.nii.gz", dtype="uint8")
    with pytest.raises(DataError, match=r"label map .*p0\.nii\.gz has shape \(3, 3, 3\)"):
        cohort.load("p0")


def test_luna16_points_outside_the_scan_are_dropped_with_a_warning(tmp_path):
    outside = "".join(f"{UID},{-100.0 + 0.7 * (20 + k)},-45.0,-195.0,{k % 2}\n" for k in range(27))  # x voxel >= 20
    _luna(tmp_path, candidates_extra=outside)
    with open(tmp_path / "annotations.csv", "a") as handle:
        handle.write(f"{UID},-100.0,-50.0,-300.0,4.0\n")  # z voxel -40
    ds = Luna16Dataset(tmp_path)
    with pytest.warns(UserWarning) as caught:
        scan = ds.load(UID)
    messages = sorted(str(w.message) for w in caught)
    mhd = str((tmp_path / "subset3" / f"{UID}.mhd").resolve())
    assert messages[0].startswith(f"{mhd}: 1 of 2 points of annotations.csv lie outside the scan (shape (10, 12, 6); e.g. voxel (0.0, 0.0, -40.0))")
    assert messages[1].startswith(f"{mhd}: 27 of 29 points of candidates.csv lie outside the scan (shape (10, 12, 6); e.g. voxel (20.0, 6.2, 2.0))")
    assert [c.label for c in scan.candidates] == [1, 0] and len(scan.annotations) == 1
    assert (scan.outside_candidates, scan.outside_annotations) == (27, 1)
    assert len(ds.candidates_world(UID)) == 29  # the CSV view is unchanged


def test_luna16_point_inside_is_the_voxel_containing_the_point():
    from semantic_genesis.io.datasets.luna16 import point_inside

    shape = (10, 10, 5)
    assert point_inside((0, 0, 0), shape) and point_inside((-0.5, 9.49, 4.49), shape)
    assert not point_inside((-0.51, 0, 0), shape) and not point_inside((0, 9.5, 0), shape)
    assert not point_inside((0, 0, np.nan), shape)
