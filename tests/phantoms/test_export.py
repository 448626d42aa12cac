"""Export of phantom cohorts into public layouts, read back by the real readers (round trips)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.io.datasets import list_scans
from semantic_genesis.io.datasets.lits import LitsDataset
from semantic_genesis.io.datasets.luna16 import Luna16Dataset
from semantic_genesis.io.datasets.native import NativeCohort
from semantic_genesis.phantoms.ct import make_ct_patient
from semantic_genesis.phantoms.export import (
    LUNA16_UID_ROOT,
    add_liver_lesions,
    export_ct_cohort,
    export_mri_cohort,
    luna16_seriesuid,
)

SHAPE = (64, 64, 48)
SEED = 3


@pytest.fixture(scope="module")
def patients():
    return [make_ct_patient(i, seed=SEED, shape=SHAPE) for i in range(2)]


@pytest.fixture(scope="module")
def luna_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna16")
    export_ct_cohort(root, 2, seed=SEED, layout="luna16", shape=SHAPE)
    return root


def test_luna16_layout_files(luna_root):
    uids = [luna16_seriesuid(SEED, i) for i in range(2)]
    for i, uid in enumerate(uids):
        assert uid.startswith(LUNA16_UID_ROOT) and len(uid) <= 64
        assert (luna_root / f"subset{i}" / f"{uid}.mhd").is_file()
        assert (luna_root / f"subset{i}" / f"{uid}.raw").stat().st_size == np.prod(SHAPE) * 2  # int16
    header = (luna_root / f"subset0/{uids[0]}.mhd").read_text()
    assert "ElementType = MET_SHORT" in header
    assert (luna_root / "annotations.csv").read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,diameter_mm"
    assert (luna_root / "candidates.csv").read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,class"
    assert luna16_seriesuid(SEED, 0) != luna16_seriesuid(SEED + 1, 0)
    with pytest.raises(ConfigError, match=r"different settings \(seed: 3 -> 4\)"):
        export_ct_cohort(luna_root, 2, seed=SEED + 1, layout="luna16", shape=SHAPE)


def test_luna16_round_trip(luna_root, patients):
    ds = Luna16Dataset(luna_root)
    assert ds.series_ids() == sorted(luna16_seriesuid(SEED, i) for i in range(2))
    n_nodules = 0
    for i, patient in enumerate(patients):
        scan = ds.load(luna16_seriesuid(SEED, i))
        # world != voxel: the export uses a non-zero origin
        assert np.all(np.abs(np.asarray(scan.volume.origin)) > 100)
        np.testing.assert_allclose(scan.spacing, patient.volume.spacing, rtol=1e-6)
        np.testing.assert_array_equal(scan.volume.array, patient.hu.astype(np.float32))
        assert len(scan.annotations) == len(patient.nodules)
        for (center, diameter), nodule in zip(scan.annotations, patient.nodules):
            assert np.max(np.abs(center - np.asarray(nodule.center_vox))) < 1.0
            assert diameter == pytest.approx(nodule.diameter_mm)
            world = np.asarray(ds.annotations_world(scan.seriesuid)[0][0])
            assert not np.allclose(world, scan.annotations[0].center_vox)
            # a nodule resolvable on this grid (diameter >= 1.5 voxels) has its label at the annotated voxel
            if diameter >= 1.5 * max(scan.spacing):
                voxel = tuple(np.rint(center).astype(int))
                assert patient.labels[voxel] == patient.label_names["nodule"]
                assert scan.volume.array[voxel] > -500  # tissue, not lung parenchyma
                n_nodules += 1
        assert [c.label for c in scan.candidates] == [c.label for c in patient.candidates]
        got = np.array([c.center_vox for c in scan.candidates])
        want = np.array([c.center_vox for c in patient.candidates])
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert n_nodules >= 3, "the test cohort should contain resolvable nodules"


def test_lits_round_trip(tmp_path, patients):
    export_ct_cohort(tmp_path, 2, seed=SEED, layout="lits", shape=SHAPE)
    ds = LitsDataset(tmp_path)
    assert ds.case_ids() == [0, 1]
    total_lesion = 0
    for case, patient in zip(ds, patients):
        liver = patient.labels == patient.label_names["liver"]
        np.testing.assert_array_equal(case.mask > 0, liver)
        lesion = case.mask == 2
        total_lesion += lesion.sum()
        np.testing.assert_allclose(case.spacing, patient.volume.spacing, rtol=1e-6)
        # outside the lesions' soft edges the volume is the patient's CT, untouched
        changed = case.volume.array != patient.hu
        assert not (changed & ~liver).any()
        assert (changed | ~lesion).all()  # every lesion voxel is modified
        if lesion.any():
            assert case.volume.array[lesion].mean() < case.volume.array[liver & ~changed].mean() - 25
    assert total_lesion > 0
    import nibabel as nib

    header = nib.load(str(tmp_path / "segmentation-0.nii")).header
    np.testing.assert_allclose(header.get_zooms(), patients[0].volume.spacing, rtol=1e-5)
    assert header.get_data_dtype() == np.uint8
    assert [r.patient_id for r in list_scans(tmp_path)] == ["volume-0", "volume-1"]


def test_add_liver_lesions_stays_in_liver():
    rng = np.random.default_rng(0)
    liver = np.zeros((40, 40, 30), bool)
    liver[5:35, 5:35, 5:25] = True
    hu = np.where(liver, 60.0, -1000.0).astype(np.float32)
    lesions = add_liver_lesions(hu, liver, (1.0, 1.0, 1.0), rng)
    assert lesions.any() and not (lesions & ~liver).any()
    # darkened by 40-70 HU at the core and at least half of that at the lesion boundary
    assert hu[lesions].min() <= 60 - 40 + 1e-3 and hu[lesions].max() <= 60 - 20 + 1e-3
    assert (hu[~liver] == -1000).all()


def test_native_ct_round_trip_and_resume(tmp_path, patients):
    first = export_ct_cohort(tmp_path, 1, seed=SEED, layout="native", shape=SHAPE)
    assert first.written == 1
    mtime = (tmp_path / "images" / "phantom_ct_s3_000.nii.gz").stat().st_mtime_ns
    again = export_ct_cohort(tmp_path, 2, seed=SEED, layout="native", shape=SHAPE)
    assert again.written == 1 and again.patients == 2  # patient 0 resumed, patient 1 added
    assert (tmp_path / "images" / "phantom_ct_s3_000.nii.gz").stat().st_mtime_ns == mtime
    cohort = NativeCohort(tmp_path)
    assert cohort.patient_ids() == ["phantom_ct_s3_000", "phantom_ct_s3_001"] and cohort.modality == "ct"
    for case, patient in zip(cohort, patients):
        np.testing.assert_array_equal(case.image.array, patient.hu.astype(np.float32))
        np.testing.assert_array_equal(case.labels, patient.labels)
        assert case.label_names == patient.label_names
        assert len(case.meta["nodules"]) == len(patient.nodules)
    info = json.loads((tmp_path / "cohort.json").read_text())
    assert info["patients"] == ["phantom_ct_s3_000", "phantom_ct_s3_001"]
    with pytest.raises(DataError, match=r"existing cohort has seed=3 but this run asks for 4"):
        export_ct_cohort(tmp_path, 2, seed=4, layout="native", shape=SHAPE)
    with pytest.raises(ConfigError, match="unknown CT layout 'brats'"):
        export_ct_cohort(tmp_path / "x", 1, layout="brats")


def test_brats_round_trip(tmp_path):
    from semantic_genesis.io.datasets.brats import BratsDataset
    from semantic_genesis.phantoms.mri import make_mri_patient

    export_mri_cohort(tmp_path, 1, seed=SEED, layout="brats", shape=(48, 48, 32))
    pid = "Brats18_PHANTOM_0_1"
    names = sorted(p.name for p in (tmp_path / pid).iterdir())
    assert names == [f"{pid}_{m}.nii.gz" for m in ("flair", "seg", "t1", "t1ce", "t2")]
    ds = BratsDataset(tmp_path)
    assert ds.patient_ids() == [pid]
    case = ds.load(pid)
    patient = make_mri_patient(0, seed=SEED, shape=(48, 48, 32))
    np.testing.assert_array_equal(case.seg, patient.seg)
    assert set(np.unique(case.seg)) <= {0, 1, 2, 4} and (case.seg == 4).any()
    for name in ("flair", "t1", "t1ce", "t2"):
        np.testing.assert_allclose(case.modalities[name].array, patient.modalities[name].array, atol=0.5)  # int16
    np.testing.assert_allclose(case.spacing, patient.spacing, rtol=1e-6)
    import nibabel as nib

    assert nib.load(str(tmp_path / pid / f"{pid}_t1.nii.gz")).header.get_data_dtype() == np.int16
    assert list_scans(tmp_path)[0].modality == "mri"


def test_native_mri_read_back(tmp_path):
    export_mri_cohort(tmp_path / "mri", 1, seed=SEED, layout="native", shape=(48, 48, 32))
    mri = NativeCohort(tmp_path / "mri")
    case = mri.load(mri.patient_ids()[0])
    assert mri.modality == "mri" and sorted(case.images) == ["flair", "t1", "t1ce", "t2"]
    assert set(np.unique(case.labels)) <= {0, 1, 2, 4} and case.labels.shape == case.image.shape
    assert list_scans(tmp_path / "mri")[0].path.name.endswith("_flair.nii.gz")
