"""Chest CT phantom: anatomy (HU per label, organ positions, lung separation), lesions, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.phantoms import CT_LABELS, make_ct_cohort, make_ct_patient
from semantic_genesis.phantoms.cohort import write_native_ct_cohort
from semantic_genesis.phantoms.ct import ChestAnatomy, grow_tree, sample_ct_params

SHAPE = (64, 64, 48)


@pytest.fixture(scope="module")
def patients():
    return [make_ct_patient(i, seed=0, shape=SHAPE) for i in range(4)]


@pytest.fixture(scope="module")
def big():
    return make_ct_patient(1, seed=0)  # default 128 x 128 x 96 grid


def _median(p, name):
    return float(np.median(p.hu[p.labels == p.label_names[name]]))


def test_geometry_and_volume(big):
    assert big.hu.shape == (128, 128, 96) and big.hu.dtype == np.int16
    assert big.labels.shape == big.hu.shape and big.labels.dtype == np.uint8
    np.testing.assert_allclose(big.spacing, (2.8, 2.8, 3.2))
    vol = big.volume
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, big.hu.astype(np.float32))
    assert vol.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert vol.metadata["modality"] == "ct"
    assert big.patient_id == "phantom_ct_001"
    assert big.label_names == CT_LABELS
    assert set(np.unique(big.labels)) <= set(CT_LABELS.values())
    # the field of view covers the whole body: air on every side of the grid
    for axis in (0, 1):
        assert np.all(np.take(big.hu, 0, axis=axis) < -900) and np.all(np.take(big.hu, -1, axis=axis) < -900)


@pytest.mark.parametrize("p_index", range(4))
def test_hu_ranges_per_label(patients, p_index):
    p = patients[p_index]
    assert _median(p, "background") < -980
    assert -900 < _median(p, "lung_left") < -700 and -900 < _median(p, "lung_right") < -700
    assert 20 < _median(p, "body") < 70  # muscle / soft tissue
    assert -200 < _median(p, "fat") < -60
    assert 10 < _median(p, "heart") < 60
    assert 40 < _median(p, "liver") < 80
    assert _median(p, "bone") > 300
    assert _median(p, "airway") < -400
    # labels agree with intensities voxel by voxel (allowing partial volume at edges)
    lung = (p.labels == CT_LABELS["lung_left"]) | (p.labels == CT_LABELS["lung_right"])
    assert np.mean(p.hu[lung] < -500) > 0.95
    outside = ndimage.binary_erosion(p.labels == 0)  # one voxel away from the (blurred) skin
    assert np.mean(p.hu[outside] < -900) > 0.99
    assert np.mean(p.hu[p.labels == CT_LABELS["bone"]] > 150) > 0.9


def test_bone_is_cortical_and_lungs_textured(big):
    bone = big.hu[big.labels == CT_LABELS["bone"]]
    assert np.percentile(bone, 95) > 600  # cortex
    lung = big.hu[big.lung_envelope > 0]
    parenchyma = big.hu[big.labels == CT_LABELS["lung_left"]]
    assert 15 < parenchyma.std() < 120  # texture + noise, not flat
    # vessels inside the lungs are blood-dense
    vessels_in_lung = (big.labels == CT_LABELS["vessel"]) & (big.lung_envelope > 0)
    assert vessels_in_lung.sum() > 500
    assert np.median(big.hu[vessels_in_lung]) > np.median(lung) + 500


def test_organs_in_anatomical_places(big):
    lab = big.labels

    def centroid(name):
        return np.array(ndimage.center_of_mass(lab == CT_LABELS[name]))

    body = np.array(ndimage.center_of_mass(lab > 0))
    left, right = centroid("lung_left"), centroid("lung_right")
    assert left[0] > body[0] > right[0]  # +X is the patient's left
    assert centroid("heart")[0] > body[0]  # heart to the left
    assert centroid("heart")[1] < body[1]  # and anterior (+Y posterior)
    assert centroid("liver")[0] < body[0]  # liver on the right
    assert centroid("liver")[2] < min(left[2], right[2])  # under the diaphragm (+Z superior)
    bone = lab == CT_LABELS["bone"]
    spine = bone[int(body[0]) - 3 : int(body[0]) + 4].sum(axis=(0, 2))
    assert np.argmax(spine) > body[1]  # the spine is posterior
    # the right dome is higher: the lowest right-lung slice is above the lowest left-lung slice
    # near the dome centres, measured on the lung envelope
    env = big.lung_envelope
    zl = np.nonzero((env == CT_LABELS["lung_left"]).any(axis=(0, 1)))[0]
    zr = np.nonzero((env == CT_LABELS["lung_right"]).any(axis=(0, 1)))[0]
    assert zl.max() > zl.min() + 40 and zr.max() > zr.min() + 40  # lungs span most of the thorax


@pytest.mark.parametrize("p_index", range(4))
def test_right_dome_higher(patients, p_index):
    """The lung base (upper quartile of the lowest lung voxel per column) is higher on the right."""
    env = patients[p_index].lung_envelope
    bases = {}
    for name in ("lung_left", "lung_right"):
        m = env == CT_LABELS[name]
        bases[name] = np.percentile(np.argmax(m, axis=2)[m.any(axis=2)], 75)
    assert bases["lung_right"] > bases["lung_left"]


@pytest.mark.parametrize("p_index", range(4))
def test_lungs_present_and_separated(patients, p_index):
    p = patients[p_index]
    env = p.lung_envelope
    left, right = env == CT_LABELS["lung_left"], env == CT_LABELS["lung_right"]
    assert left.sum() > 2000 and right.sum() > 2000
    comps, n = ndimage.label(env > 0, structure=np.ones((3, 3, 3)))
    for c in range(1, n + 1):
        sides = np.unique(env[comps == c])
        assert len(sides) == 1, "a connected lung region touches both lungs"
    # the mediastinum is soft tissue: along every row through the heart the two lungs are apart
    heart_z = int(ndimage.center_of_mass(p.labels == CT_LABELS["heart"])[2])
    gap = []
    for y in range(p.hu.shape[1]):
        xs_l = np.nonzero(left[:, y, heart_z])[0]
        xs_r = np.nonzero(right[:, y, heart_z])[0]
        if len(xs_l) and len(xs_r):
            gap.append(xs_l.min() - xs_r.max())
    assert gap and min(gap) >= 2


def test_nodules_inside_lungs_and_candidates(patients, big):
    total = 0
    kinds, attachments = set(), set()
    for p in patients + [big]:
        assert 0 <= len(p.nodules) <= 5
        nod_mask = p.labels == CT_LABELS["nodule"]
        assert np.all(p.lung_envelope[nod_mask] > 0)
        for n in p.nodules:
            total += 1
            kinds.add(n.kind)
            attachments.add(n.attached)
            assert 3.0 <= n.diameter_mm <= 30.0
            ijk = tuple(int(round(c)) for c in n.center_vox)
            side = CT_LABELS["lung_left"] if n.side == "left" else CT_LABELS["lung_right"]
            assert p.lung_envelope[ijk] == side
        positives = [c for c in p.candidates if c.label == 1]
        negatives = [c for c in p.candidates if c.label == 0]
        assert len(positives) == len(p.nodules)
        for c, n in zip(positives, p.nodules):
            assert c.kind == "nodule" and np.allclose(c.center_vox, n.center_vox)
        assert len(negatives) >= 10
        assert {c.kind for c in negatives} <= {"vessel_junction", "vessel_cross_section", "random"}
        for c in negatives:
            assert p.lung_envelope[tuple(int(round(x)) for x in c.center_vox)] > 0
    assert total >= 5
    assert "solid" in kinds
    assert {"vessel", "pleura"} & attachments


def test_nodule_intensity_on_fine_grid(big):
    """A nodule of >= 6 mm is much denser than the lung at its centre (solid core or ground glass)."""
    assert big.nodules
    for n in big.nodules:
        ijk = tuple(int(round(c)) for c in n.center_vox)
        if n.diameter_mm >= 6:
            assert big.hu[ijk] > -600
    vj = [c for c in big.candidates if c.kind == "vessel_junction"]
    assert vj, "vessel junctions are candidates"
    # look-alikes really look alike: a junction is denser than the parenchyma around it
    dens = [big.hu[tuple(int(round(x)) for x in c.center_vox)] for c in vj]
    assert np.median(dens) > np.median(big.hu[big.labels == CT_LABELS["lung_left"]]) + 150


def test_determinism_and_variation():
    a = make_ct_patient(3, seed=7, shape=SHAPE)
    b = make_ct_patient(3, seed=7, shape=SHAPE)
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert [n.to_dict() for n in a.nodules] == [n.to_dict() for n in b.nodules]
    assert [c.to_dict() for c in a.candidates] == [c.to_dict() for c in b.candidates]
    assert json.dumps(a.params) == json.dumps(b.params)
    c = make_ct_patient(4, seed=7, shape=SHAPE)
    d = make_ct_patient(3, seed=8, shape=SHAPE)
    for other in (c, d):
        assert np.mean(a.labels != other.labels) > 0.02
        assert a.params["body_half_width_mm"] != other.params["body_half_width_mm"]


def test_parameters_vary_within_ranges():
    ps = [sample_ct_params(i, 0) for i in range(40)]
    for key, lo, hi in (("body_scale", 0.88, 1.05), ("heart_scale", 0.88, 1.12), ("rotation_deg", -5, 5), ("noise_hu", 10, 20)):
        vals = np.array([p[key] for p in ps])
        assert vals.min() >= lo and vals.max() <= hi
        assert vals.std() > (hi - lo) / 8  # really varies
    # the right dome is always higher than the left
    assert all(p["dome_right_extra_mm"] > 0 for p in ps)


def test_vessel_trees_taper_and_stay_in_lung():
    params = sample_ct_params(0, 0)
    anat = ChestAnatomy(params)
    rng = np.random.default_rng(0)
    hilum = np.array([[0.36 * anat.Ac0 + 6, 0.05 * anat.Bc0, anat.heart_top + 4.0]])
    tree = grow_tree(rng, anat, np.repeat(hilum, 3, 0), np.array([[0.3, 0, 1], [1, 0, 0], [0.5, 0.4, -1]]), np.full(3, 5.0), side=1)
    segs = tree.segments
    assert len(segs) > 40 and len(tree.junctions) == len(segs)
    assert np.all(segs[:, 7] < segs[:, 6])  # every branch tapers
    assert segs[:, 6].min() >= 0.6 and segs[:, 6].max() <= 5.0
    ends = segs[:, 3:6]
    assert np.all(anat.lung_side(ends[:, 0], ends[:, 1], ends[:, 2]) == 1)
    # thin branches are far more numerous than thick ones (a branching tree)
    assert np.sum(segs[:, 6] < 2.0) > 3 * np.sum(segs[:, 6] > 3.5)


def test_bad_input():
    with pytest.raises(DataError, match="index"):
        make_ct_patient(-1, shape=SHAPE)
    with pytest.raises(DataError, match="field of view"):
        make_ct_patient(0, shape=SHAPE, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(DataError, match="shape"):
        make_ct_patient(0, shape=(64, 64))


def test_cohort_parallel_equals_serial():
    serial = make_ct_cohort(2, seed=3, shape=(48, 48, 32))
    parallel = make_ct_cohort(2, seed=3, workers=2, shape=(48, 48, 32))
    for s, p in zip(serial, parallel):
        np.testing.assert_array_equal(s.hu, p.hu)
    assert [p.patient_id for p in serial] == ["phantom_ct_s3_000", "phantom_ct_s3_001"]  # seed in the id


def test_cohorts_of_different_seeds_are_different_patients():
    """Patient ids differ between cohorts (as in real datasets), so the pretraining / test leakage check
    does not take the target-task cohort of another seed for the pretraining cohort."""
    from semantic_genesis.phantoms.ct import ct_patient_id

    assert ct_patient_id(0) == ct_patient_id(0, seed=0) == "phantom_ct_000"  # seed 0 keeps the short ids
    assert ct_patient_id(0, seed=1000) == "phantom_ct_s1000_000"
    assert len({ct_patient_id(i, s) for i in range(3) for s in (0, 1, 1000)}) == 9
    from semantic_genesis.phantoms.mri import mri_patient_id

    assert mri_patient_id(2) == "phantom_mri_002" and mri_patient_id(2, seed=7) == "phantom_mri_s7_002"


def test_native_writer_round_trip_and_resume(tmp_path):
    from semantic_genesis.io.volumes import read_volume

    out = tmp_path / "cohort"
    ids = write_native_ct_cohort(out, 2, seed=5, shape=(48, 48, 32), progress=False)
    assert ids == ["phantom_ct_s5_000", "phantom_ct_s5_001"]
    info = json.loads((out / "cohort.json").read_text())
    assert info["modality"] == "ct" and info["n"] == 2 and info["patients"] == ids
    patient = make_ct_patient(1, seed=5, shape=(48, 48, 32))
    vol = read_volume(out / "images" / "phantom_ct_s5_001.nii.gz")
    np.testing.assert_array_equal(vol.array, patient.hu.astype(np.float32))
    np.testing.assert_allclose(vol.spacing, patient.spacing, atol=1e-5)
    np.testing.assert_allclose(vol.origin, patient.volume.origin, atol=1e-4)
    labels = read_volume(out / "labels" / "phantom_ct_s5_001.nii.gz")
    np.testing.assert_array_equal(labels.array.astype(np.uint8), patient.labels)
    meta = json.loads((out / "meta" / "phantom_ct_s5_001.json").read_text())
    for rec in meta["candidates"]:
        np.testing.assert_allclose(vol.world_to_voxel(rec["center_world"]), rec["center_vox"], atol=1e-6)
    assert meta["label_names"] == CT_LABELS
    # resume: existing patients are skipped, the cohort can grow
    stamp = (out / "images" / "phantom_ct_s5_000.nii.gz").stat().st_mtime_ns
    ids3 = write_native_ct_cohort(out, 3, seed=5, shape=(48, 48, 32), progress=False)
    assert len(ids3) == 3 and (out / "meta" / "phantom_ct_s5_002.json").is_file()
    assert (out / "images" / "phantom_ct_s5_000.nii.gz").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="seed"):
        write_native_ct_cohort(out, 3, seed=6, shape=(48, 48, 32), progress=False)


def test_anatomy_keeps_its_physical_size_on_any_grid():
    """The anatomy is defined in mm: a 2x finer in-plane grid gives the same body, lungs and nodules."""
    coarse = make_ct_patient(0, seed=0)  # 128 x 128 x 96 at 2.8 x 2.8 x 3.2 mm
    fine = make_ct_patient(0, seed=0, shape=(256, 256, 96), spacing=(1.4, 1.4, 3.2))
    for p in (coarse, fine):
        p.extent = []
        for axis in range(3):
            present = np.flatnonzero((p.labels > 0).any(axis=tuple(a for a in range(3) if a != axis)))
            p.extent.append((present[-1] - present[0] + 1) * p.spacing[axis])
    np.testing.assert_allclose(fine.extent, coarse.extent, atol=2 * 2.8)  # body size in mm
    assert fine.params["lung_volume_ml"] == pytest.approx(coarse.params["lung_volume_ml"], rel=0.01)
    assert len(fine.nodules) == len(coarse.nodules)
    for a, b in zip(coarse.nodules, fine.nodules):
        np.testing.assert_allclose(fine.volume.voxel_to_world(np.array(b.center_vox)),
                                   coarse.volume.voxel_to_world(np.array(a.center_vox)), atol=0.1)
