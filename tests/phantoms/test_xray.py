"""Chest radiographs projected from the CT phantom: display contrast, findings, masks, labels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.phantoms.cohort import XRAY_LABEL_COLUMNS, write_native_xray_cohort
from semantic_genesis.phantoms.ct import make_ct_patient
from semantic_genesis.phantoms.xray import FINDINGS, draw_findings, make_radiograph, make_xray_cohort, normalise_findings, project

CT_SHAPE = (96, 96, 64)
SIZE = (128, 128)


@pytest.fixture(scope="module")
def ct():
    return make_ct_patient(2, seed=0, shape=CT_SHAPE)


@pytest.fixture(scope="module")
def normal(ct):
    return make_radiograph(ct, (), size=SIZE)


def test_image_and_contrast(normal):
    img = normal.image
    assert img.shape == SIZE and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert normal.labels == {"Nodule": normal.labels["Nodule"], "Cardiomegaly": False, "Effusion": False, "Pneumothorax": False}
    assert not normal.pneumothorax_mask.any()
    lung = ndimage.binary_erosion(normal.masks["lung"], iterations=2) & ~normal.masks["heart"]
    heart = ndimage.binary_erosion(normal.masks["heart"], iterations=2)
    cols = SIZE[1]
    spine = np.zeros(SIZE, bool)
    spine[SIZE[0] // 4 : SIZE[0] // 2, cols // 2 - 2 : cols // 2 + 3] = True  # upper mediastinum over the spine
    outside = np.zeros(SIZE, bool)
    outside[:, :3] = True
    assert np.median(img[lung]) < np.median(img[heart]) - 0.15  # lungs dark, heart bright
    assert np.median(img[lung]) < np.median(img[spine]) - 0.2
    assert np.median(img[outside]) < np.median(img[lung])  # air outside darkest
    # lungs on both sides of the midline, heart mostly on the patient's left (image right)
    lx = np.nonzero(normal.masks["lung"].any(axis=0))[0]
    assert lx.min() < cols // 3 and lx.max() > 2 * cols // 3
    hx = ndimage.center_of_mass(normal.masks["heart"])[1]
    assert hx > cols / 2
    assert 0.3 < normal.measurements["cardiothoracic_ratio"] < 0.5
    # physical spacing: the detector covers the CT field of view times a small magnification
    fov_rows = CT_SHAPE[2] * make_ct_patient(2, shape=CT_SHAPE).spacing[2]
    assert 1.0 < normal.spacing[0] * SIZE[0] / fov_rows < 1.15


def test_cardiomegaly_widens_heart(ct, normal):
    big = make_radiograph(ct, ("Cardiomegaly",), size=SIZE)
    assert big.labels["Cardiomegaly"]
    assert big.measurements["heart_width_mm"] > 1.15 * normal.measurements["heart_width_mm"]
    assert big.measurements["cardiothoracic_ratio"] > 0.45
    assert ct.hu is not None and not np.shares_memory(big.image, normal.image)
    # the CT patient itself is untouched
    np.testing.assert_array_equal(ct.hu, make_ct_patient(2, seed=0, shape=CT_SHAPE).hu)


def test_effusion_brightens_the_base(ct, normal):
    eff = make_radiograph(ct, ("effusion",), size=SIZE)
    assert eff.labels["Effusion"]
    lung = normal.masks["lung"]
    rows = np.nonzero(lung.any(axis=1))[0]
    base = lung.copy()
    base[: rows.min() + int(0.75 * (rows.max() - rows.min()))] = False  # lowest quarter of the lungs
    base &= normal.image < np.median(normal.image[lung]) + 0.1  # aerated there (not behind the domes)
    apex = lung.copy()
    apex[rows.min() + int(0.4 * (rows.max() - rows.min())) :] = False
    assert eff.image[base].mean() > normal.image[base].mean() + 0.08
    assert abs(eff.image[apex].mean() - normal.image[apex].mean()) < 0.03


def test_pneumothorax_mask_has_no_lung_markings(ct, normal):
    ptx = make_radiograph(ct, ("Pneumothorax",), size=SIZE)
    mask = ptx.pneumothorax_mask
    assert ptx.labels["Pneumothorax"] and mask.dtype == bool and mask.shape == SIZE
    assert 0.01 < mask.mean() < 0.2
    assert np.all(normal.masks["lung"][ndimage.binary_erosion(mask)])  # inside the original lung field
    # the rim is darker than before (air instead of lung) and flat (no vessel markings)
    inner = ndimage.binary_erosion(mask)
    assert ptx.image[inner].mean() < normal.image[inner].mean() - 0.03
    # no lung markings in the rim: every vessel and parenchyma voxel of those columns became air
    from semantic_genesis.phantoms.xray import _pneumothorax

    hu = ct.hu.astype(np.float32)
    air, info = _pneumothorax(hu, ct.lung_envelope, ct.label_names, np.random.default_rng(0))
    vessels = (ct.labels == ct.label_names["vessel"]) & air
    assert air.sum() > 100 and vessels.sum() > 0
    assert np.all(hu[air] < -970)
    columns = air.any(axis=1)
    side = ct.label_names[f"lung_{info['pneumothorax_side']}"]
    assert np.all(hu[(ct.lung_envelope == side) & columns[:, None, :]] < -970)
    # mask lies apically / laterally on the collapsed side
    side = ptx.params["pneumothorax_side"]
    cx = ndimage.center_of_mass(mask)[1]
    assert (cx < SIZE[1] / 2) == (side == "right")


def test_nodule_finding_inserts_visible_nodule():
    ct = make_ct_patient(0, seed=0, shape=CT_SHAPE)  # no nodule >= 6 mm in this patient
    assert not [n for n in ct.nodules if n.diameter_mm >= 6]
    plain = make_radiograph(ct, (), size=SIZE)
    with_nodule = make_radiograph(ct, ("Nodule",), size=SIZE)
    assert not plain.labels["Nodule"] and with_nodule.labels["Nodule"]
    assert np.abs(with_nodule.image - plain.image).max() > 0.1


def test_findings_names_views_and_determinism(ct):
    assert normalise_findings(["pneumothorax", "NODULE"]) == ("Nodule", "Pneumothorax")
    with pytest.raises(DataError, match="unknown radiograph finding 'fracture'"):
        make_radiograph(ct, ("fracture",))
    with pytest.raises(DataError, match="view"):
        make_radiograph(ct, (), view="LAT")
    a = make_radiograph(ct, ("Effusion",), size=SIZE)
    b = make_radiograph(ct, ("Effusion",), size=SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    ap = make_radiograph(ct, (), size=SIZE, view="AP")
    pa = make_radiograph(ct, (), size=SIZE, view="PA")
    # AP: the heart is farther from the detector than in PA and is magnified more
    assert ap.measurements["heart_width_mm"] > pa.measurements["heart_width_mm"]


def test_projection_is_a_line_integral():
    vals = np.zeros((20, 30, 10), np.float32)
    vals[8:12, 5:25, 4:6] = 0.5  # 20 voxels deep along Y
    p = project(vals, (1.0, 2.0, 1.0), "PA")
    assert p.shape == (20, 10)
    assert p[10, 5] == pytest.approx(0.5 * 20 * 2.0, rel=0.03)
    assert p[0, 0] == 0.0


def test_cohort_findings_rate_and_native_writer(tmp_path):
    draws = [draw_findings(i, 0, 0.3) for i in range(200)]
    for f in FINDINGS:
        rate = np.mean([f in d for d in draws])
        assert 0.2 < rate < 0.4
    assert draw_findings(5, 0, 0.0) == ()
    rs = make_xray_cohort(2, seed=1, finding_rate=1.0, ct_shape=(64, 64, 48), size=(64, 64))
    assert all(r.labels["Pneumothorax"] and r.labels["Effusion"] for r in rs)
    ids = write_native_xray_cohort(tmp_path, 2, seed=1, ct_shape=(64, 64, 48), size=(64, 64), finding_rate=0.5, progress=False)
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert [r["patient_id"] for r in rows] == ids and list(rows[0])[1:] == list(XRAY_LABEL_COLUMNS)
    from semantic_genesis.io.images2d import read_image2d

    for i, pid in enumerate(ids):
        meta = json.loads((tmp_path / "meta" / f"{pid}.json").read_text())
        expected = make_radiograph(make_ct_patient(i, 1, shape=(64, 64, 48)), draw_findings(i, 1, 0.5), size=(64, 64))
        assert meta["labels"] == expected.labels
        assert [int(rows[i][c]) for c in XRAY_LABEL_COLUMNS] == [int(expected.labels[c]) for c in XRAY_LABEL_COLUMNS]
        img = read_image2d(tmp_path / "images" / f"{pid}.png")
        assert img.array.shape == (64, 64)
        mask = read_image2d(tmp_path / "labels" / f"{pid}.png")
        np.testing.assert_array_equal(np.asarray(mask.array) > 0, expected.pneumothorax_mask)
