"""Chest radiographs projected from the CT phantom: display contrast, findings, sex, masks, labels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.phantoms.cohort import XRAY_LABEL_COLUMNS, write_native_xray_cohort
from semantic_genesis.phantoms.ct import make_ct_patient
from semantic_genesis.phantoms.xray import (
    CHESTXRAY14_FINDINGS,
    FINDINGS,
    SEX_SCALE,
    draw_findings,
    draw_xray_spec,
    make_radiograph,
    make_xray_cohort,
    normalise_findings,
    project,
)
from semantic_genesis.phantoms.xray_findings import SIMULATORS, FindingContext

CT_SHAPE = (96, 96, 64)
SIZE = (128, 128)


@pytest.fixture(scope="module")
def ct():
    return make_ct_patient(2, seed=0, shape=CT_SHAPE)


@pytest.fixture(scope="module")
def normal(ct):
    return make_radiograph(ct, (), size=SIZE, sex="M")


def test_image_and_contrast(normal):
    img = normal.image
    assert img.shape == SIZE and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert set(normal.labels) == set(FINDINGS) and not any(normal.labels.values())
    assert normal.params["removed_nodule_voxels"] > 0  # the CT's own nodules are not shown without the finding
    assert not normal.pneumothorax_mask.any() and normal.sex == "M"
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
    big = make_radiograph(ct, ("Cardiomegaly",), size=SIZE, sex="M")
    assert big.labels["Cardiomegaly"]
    assert big.measurements["heart_width_mm"] > 1.15 * normal.measurements["heart_width_mm"]
    assert big.measurements["cardiothoracic_ratio"] > 0.45
    assert ct.hu is not None and not np.shares_memory(big.image, normal.image)
    # the CT patient itself is untouched
    np.testing.assert_array_equal(ct.hu, make_ct_patient(2, seed=0, shape=CT_SHAPE).hu)


def test_effusion_brightens_the_base(ct, normal):
    eff = make_radiograph(ct, ("effusion",), size=SIZE, sex="M")
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
    ptx = make_radiograph(ct, ("Pneumothorax",), size=SIZE, sex="M")
    mask = ptx.pneumothorax_mask
    assert ptx.labels["Pneumothorax"] and mask.dtype == bool and mask.shape == SIZE
    np.testing.assert_array_equal(mask, ptx.finding_masks["Pneumothorax"])
    assert 0.01 < mask.mean() < 0.2
    assert np.all(normal.masks["lung"][ndimage.binary_erosion(mask)])  # inside the original lung field
    # the rim is darker than before (air instead of lung) and flat (no vessel markings)
    inner = ndimage.binary_erosion(mask)
    assert ptx.image[inner].mean() < normal.image[inner].mean() - 0.03
    # no lung markings in the rim: every vessel and parenchyma voxel of those columns became air
    ctx = FindingContext(ct.hu.astype(np.float32), ct.labels.copy(), ct.lung_envelope, ct.label_names, ct.spacing)
    result = SIMULATORS["Pneumothorax"](ctx, np.random.default_rng(0), 0.5)
    air = result.region
    vessels = (ct.labels == ct.label_names["vessel"]) & air
    assert air.sum() > 100 and vessels.sum() > 0
    assert np.all(ctx.hu[air] < -970)
    columns = air.any(axis=1)
    side = ct.label_names[f"lung_{result.params['pneumothorax_side']}"]
    assert np.all(ctx.hu[(ct.lung_envelope == side) & columns[:, None, :]] < -970)
    # mask lies apically / laterally on the collapsed side
    side = ptx.params["pneumothorax_side"]
    cx = ndimage.center_of_mass(mask)[1]
    assert (cx < SIZE[1] / 2) == (side == "right")


def test_nodule_finding_inserts_visible_nodule():
    ct = make_ct_patient(0, seed=0, shape=CT_SHAPE)  # no nodule >= 6 mm in this patient
    assert not [n for n in ct.nodules if n.diameter_mm >= 6]
    plain = make_radiograph(ct, (), size=SIZE, sex="M")
    with_nodule = make_radiograph(ct, ("Nodule",), size=SIZE, sex="M")
    assert not plain.labels["Nodule"] and with_nodule.labels["Nodule"]
    assert 10 <= with_nodule.params["inserted_nodule_mm"] <= 20
    spot = with_nodule.finding_masks["Nodule"]
    assert 0 < spot.sum() < 0.01 * spot.size
    assert (with_nodule.image - plain.image)[spot].max() > 0.05


# Each finding changes the image where it is, in the expected direction (same CT, same sex, same
# detector noise): mean change inside its projected region vs outside. Patient 0 has no visible
# nodule, so the Nodule finding inserts one.
EXPECTED_CHANGE = {
    "Atelectasis": +0.1, "Cardiomegaly": +0.04, "Effusion": +0.06, "Infiltration": +0.03, "Mass": +0.08,
    "Nodule": +0.02, "Pneumonia": +0.04, "Pneumothorax": -0.03, "Consolidation": +0.06, "Edema": +0.03,
    "Emphysema": -0.02, "Fibrosis": +0.015, "Pleural_Thickening": +0.02, "Hernia": None, "Tuberculosis": +0.02,
}


@pytest.fixture(scope="module")
def plain0():
    ct = make_ct_patient(0, seed=0, shape=CT_SHAPE)
    return ct, make_radiograph(ct, (), size=SIZE, sex="M")


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_is_visible_where_it_is(finding, plain0):
    ct, plain = plain0
    rg = make_radiograph(ct, (finding,), size=SIZE, sex="M")
    assert rg.labels[finding] and sum(rg.labels.values()) == 1
    assert 0.0 <= rg.severity[finding] <= 1.0
    region = rg.finding_masks[finding]
    assert region.any() and region.mean() < 0.5
    diff = rg.image - plain.image
    outside = ~ndimage.binary_dilation(region, iterations=3)
    assert abs(diff[outside].mean()) < 0.01  # the rest of the image is (nearly) untouched
    expected = EXPECTED_CHANGE[finding]
    if expected is None:  # a hiatal hernia: fluid brighter, gas cap darker than the lung it replaces
        assert np.abs(diff[region]).mean() > 0.03 and diff[region].min() < -0.05 and diff[region].max() > 0.05
    elif expected > 0:
        assert diff[region].mean() > expected
    else:
        assert diff[region].mean() < expected
    # deterministic, and adding another finding neither changes this one's parameters nor its severity
    again = make_radiograph(ct, (finding,), size=SIZE, sex="M")
    np.testing.assert_array_equal(again.image, rg.image)
    other = "Effusion" if finding != "Effusion" else "Mass"
    both = make_radiograph(ct, (finding, other), size=SIZE, sex="M")
    assert both.severity[finding] == rg.severity[finding]


def test_sex_changes_anatomy(ct):
    male = make_radiograph(ct, (), size=SIZE, sex="M")
    female = make_radiograph(ct, (), size=SIZE, sex="F")
    assert female.sex == "F" and female.params["breast_depth_mm"] > 0
    ratio = female.measurements["thorax_width_mm"] / male.measurements["thorax_width_mm"]
    assert SEX_SCALE["F"] - 0.03 < ratio < SEX_SCALE["F"] + 0.03  # a narrower thorax
    # breast shadows: the lower lung zones are brighter relative to the upper zones than in the male
    def zone_contrast(rg):
        lung = rg.masks["lung"] & ~rg.masks["heart"]
        rows = np.nonzero(lung.any(axis=1))[0]
        cut = rows.min() + (rows.max() - rows.min()) * np.array([0.4, 0.65, 0.9])
        upper = lung.copy()
        upper[int(cut[0]):] = False
        lower = lung.copy()
        lower[: int(cut[1])] = False
        lower[int(cut[2]):] = False
        return rg.image[lower].mean() - rg.image[upper].mean()

    assert zone_contrast(female) > zone_contrast(male) + 0.03
    with pytest.raises(DataError, match="unknown patient sex 'X'"):
        make_radiograph(ct, (), size=SIZE, sex="X")
    assert make_radiograph(ct, (), size=SIZE).sex == draw_xray_spec(2, 0).sex  # default: the cohort's draw


def test_findings_names_views_and_determinism(ct):
    assert normalise_findings(["pneumothorax", "NODULE", "pleural thickening"]) == ("Nodule", "Pneumothorax", "Pleural_Thickening")
    assert FINDINGS[:14] == CHESTXRAY14_FINDINGS and FINDINGS[14] == "Tuberculosis"
    with pytest.raises(DataError, match="unknown radiograph finding 'fracture'"):
        make_radiograph(ct, ("fracture",))
    with pytest.raises(DataError, match="view"):
        make_radiograph(ct, (), view="LAT")
    a = make_radiograph(ct, ("Effusion",), size=SIZE)
    b = make_radiograph(ct, ("Effusion",), size=SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    ap = make_radiograph(ct, (), size=SIZE, view="AP", sex="M")
    pa = make_radiograph(ct, (), size=SIZE, view="PA", sex="M")
    # AP: the heart is farther from the detector than in PA and is magnified more
    assert ap.measurements["heart_width_mm"] > pa.measurements["heart_width_mm"]


def test_projection_is_a_line_integral():
    vals = np.zeros((20, 30, 10), np.float32)
    vals[8:12, 5:25, 4:6] = 0.5  # 20 voxels deep along Y
    p = project(vals, (1.0, 2.0, 1.0), "PA")
    assert p.shape == (20, 10)
    assert p[10, 5] == pytest.approx(0.5 * 20 * 2.0, rel=0.03)
    assert p[0, 0] == 0.0
    # a narrower patient: the footprint narrows in X (not in Z) and the path length shrinks
    narrow = project(vals, (1.0, 2.0, 1.0), "PA", scale=0.8)
    assert narrow[10, 5] == pytest.approx(0.8 * p[10, 5], rel=0.03)
    assert narrow[:, 5].sum() == pytest.approx(0.8 * 0.8 * p[:, 5].sum(), rel=0.03)
    np.testing.assert_allclose(narrow[10], 0.8 * p[10], atol=0.05)
    # grouping planes of similar magnification changes positions by a fraction of a voxel only
    big = np.zeros((64, 128, 48), np.float32)
    big[5:59, 10:120, 4:44] = 1.0
    exact = project(big, (2.8, 2.8, 3.2), "AP", tolerance=0.0)
    grouped = project(big, (2.8, 2.8, 3.2), "AP")
    assert np.abs(grouped - exact).max() < 0.5 * 2.8 * 110 / 2  # at most half a voxel of edge shift
    assert grouped.sum() == pytest.approx(exact.sum(), rel=1e-3)


def test_cohort_spec_rates_and_native_writer(tmp_path):
    draws = [draw_findings(i, 0, 0.3) for i in range(200)]
    for f in FINDINGS:
        rate = np.mean([f in d for d in draws])
        assert 0.2 < rate < 0.4
    assert draw_findings(5, 0, 0.0) == ()
    specs = [draw_xray_spec(i, 0, female_fraction=0.3, ap_fraction=0.6) for i in range(300)]
    assert 0.22 < np.mean([s.sex == "F" for s in specs]) < 0.38 and 0.52 < np.mean([s.view == "AP" for s in specs]) < 0.68
    assert all(18 <= s.age < 90 for s in specs) and draw_xray_spec(7, 0) == draw_xray_spec(7, 0)
    with pytest.raises(DataError, match=r"female_fraction must be in \[0, 1\]"):
        draw_xray_spec(0, 0, female_fraction=1.5)
    rs = make_xray_cohort(2, seed=1, finding_rate=1.0, ct_shape=(64, 64, 48), size=(64, 64))
    assert all(all(r.labels.values()) for r in rs)
    ids = write_native_xray_cohort(tmp_path, 2, seed=1, ct_shape=(64, 64, 48), size=(64, 64), finding_rate=0.5, progress=False)
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert [r["patient_id"] for r in rows] == ids and list(rows[0])[4:] == list(XRAY_LABEL_COLUMNS)
    from semantic_genesis.io.images2d import read_image2d

    for i, pid in enumerate(ids):
        meta = json.loads((tmp_path / "meta" / f"{pid}.json").read_text())
        spec = draw_xray_spec(i, 1, 0.5)
        expected = make_radiograph(make_ct_patient(i, 1, shape=(64, 64, 48)), spec.findings, size=(64, 64), view=spec.view, sex=spec.sex)
        assert meta["labels"] == expected.labels and meta["sex"] == spec.sex == rows[i]["sex"] and meta["age"] == spec.age
        assert [int(rows[i][c]) for c in XRAY_LABEL_COLUMNS] == [int(expected.labels[c]) for c in XRAY_LABEL_COLUMNS]
        img = read_image2d(tmp_path / "images" / f"{pid}.png")
        assert img.array.shape == (64, 64)
        mask = read_image2d(tmp_path / "labels" / f"{pid}.png")
        np.testing.assert_array_equal(np.asarray(mask.array) > 0, expected.pneumothorax_mask)


def _zone_features(image: np.ndarray, grid: int = 8) -> np.ndarray:
    """Generic image features: intensity and high-pass quantiles (5 %, 50 %, 95 %, max) in a grid of cells."""
    high = image - ndimage.gaussian_filter(image, 2.0)
    h, w = image.shape
    out = []
    for array in (image, high):
        cells = array.reshape(grid, h // grid, grid, w // grid).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
        out.append(np.quantile(cells, [0.05, 0.5, 0.95, 1.0], axis=1).T.ravel())
    return np.concatenate(out)


def test_a_small_classifier_learns_each_finding():
    """A ridge classifier on generic zone features, trained on 8 phantom patients (each with and
    without the finding, filmed as a man PA and as a woman AP), is applied to 6 other patients, each
    filmed both ways, with and without the finding. For every finding the classifier's score rises
    when the finding is added to an unseen patient in at least 10 of the 12 films (chance: 6; one-sided
    sign test p < 0.02), and the unpaired AUC over all films is above chance on average.

    Not for Nodule: one 12-28 mm lesion at a random place among ribs and vessels (2-5 pixels here)
    moves no zone statistic enough for a 32-image linear classifier (its score rises in 6 of 12
    films); its visibility is tested by the image statistic above, learning it needs a CNN."""
    from sklearn.metrics import roc_auc_score

    n_train, n_test, size = 8, 6, (64, 64)
    cts = [make_ct_patient(i, seed=31, shape=(64, 64, 48)) for i in range(n_train + n_test)]
    looks = [("M", "PA"), ("F", "AP")]

    def features(findings, patients):
        return np.array([_zone_features(make_radiograph(ct, findings, size=size, sex=s, view=v).image) for ct in patients for s, v in looks])

    normal_train, normal_test = features((), cts[:n_train]), features((), cts[n_train:])
    wins, aucs = {}, {}
    for finding in FINDINGS:
        if finding == "Nodule":
            continue
        sick_train, sick_test = features((finding,), cts[:n_train]), features((finding,), cts[n_train:])
        x = np.concatenate([normal_train, sick_train])
        y = np.r_[-np.ones(len(normal_train)), np.ones(len(sick_train))]
        mean, std = x.mean(0), x.std(0) + 1e-6
        a = (x - mean) / std
        w = np.linalg.solve(a.T @ a + 10.0 * np.eye(a.shape[1]), a.T @ y)
        without, with_ = (normal_test - mean) / std @ w, (sick_test - mean) / std @ w
        wins[finding] = int((with_ > without).sum())
        aucs[finding] = roc_auc_score(np.r_[np.zeros(len(without)), np.ones(len(with_))], np.r_[without, with_])
    assert min(wins.values()) >= 10, wins
    assert min(aucs.values()) > 0.5 and np.mean(list(aucs.values())) > 0.65, aucs
