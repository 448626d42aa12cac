"""Brain MRI phantom: tissue contrasts per sequence, nested BraTS labels, determinism, variation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.phantoms.cohort import write_native_mri_cohort
from semantic_genesis.phantoms.mri import BRATS_LABELS, MRI_TISSUES, SEQUENCES, make_mri_patient

SHAPE = (64, 64, 48)


@pytest.fixture(scope="module")
def patients():
    return [make_mri_patient(i, seed=0, shape=SHAPE) for i in range(3)]


def _med(p, seq, tissue):
    mask = ndimage.binary_erosion(p.tissue == MRI_TISSUES[tissue])  # avoid partial-volume edges
    if mask.sum() < 5:
        mask = p.tissue == MRI_TISSUES[tissue]
    return float(np.median(p.modalities[seq].array[mask]))


def test_structure(patients):
    p = patients[0]
    assert set(p.modalities) == set(SEQUENCES)
    for vol in p.modalities.values():
        assert vol.shape == SHAPE and vol.array.dtype == np.float32
        assert vol.metadata["modality"] == "mri"
        assert np.all(vol.array >= 0)
        assert vol.spacing == p.modalities["flair"].spacing and vol.origin == p.modalities["flair"].origin
    assert p.seg.dtype == np.uint8 and p.seg.shape == SHAPE
    assert set(np.unique(p.seg)) <= {0, 1, 2, 4}
    assert p.label_names == BRATS_LABELS
    assert p.patient_id == "phantom_mri_000"


@pytest.mark.parametrize("i", range(3))
def test_contrasts(patients, i):
    p = patients[i]
    # T1: white matter > grey matter > CSF; T2: CSF > grey matter > white matter
    assert _med(p, "t1", "white_matter") > _med(p, "t1", "grey_matter") > _med(p, "t1", "ventricle")
    assert _med(p, "t2", "ventricle") > _med(p, "t2", "grey_matter") > _med(p, "t2", "white_matter")
    # FLAIR: CSF suppressed, oedema brightest
    assert _med(p, "flair", "ventricle") < 0.5 * _med(p, "flair", "white_matter")
    assert _med(p, "flair", "edema") > 1.4 * _med(p, "flair", "white_matter")
    assert _med(p, "t2", "edema") > 1.4 * _med(p, "t2", "white_matter")
    # skull dark everywhere, scalp fat bright on T1
    for seq in SEQUENCES:
        assert _med(p, seq, "skull") < 0.6 * _med(p, seq, "grey_matter")
    assert _med(p, "t1", "scalp") > _med(p, "t1", "white_matter")
    if p.params["tumour_enhancing"]:
        enh = p.seg == BRATS_LABELS["enhancing"]
        nec = p.seg == BRATS_LABELS["necrotic_core"]
        t1ce, t1 = p.modalities["t1ce"].array, p.modalities["t1"].array
        assert np.median(t1ce[enh]) > 1.5 * np.median(t1[enh])  # the rim enhances
        assert np.median(t1ce[enh]) > np.median(t1ce[p.tissue == MRI_TISSUES["white_matter"]])
        if nec.sum() > 3:
            assert np.median(t1ce[nec]) < 0.7 * np.median(t1ce[enh])  # necrosis dark


@pytest.mark.parametrize("i", range(3))
def test_brats_labels_nested(patients, i):
    p = patients[i]
    whole = p.seg > 0
    core = (p.seg == 1) | (p.seg == 4)
    assert core.sum() > 0 and (p.seg == 2).sum() > core.sum() * 0.3
    # the core lies inside the whole tumour with a margin: its dilation stays in the tumour
    assert np.all(whole[ndimage.binary_dilation(core)])
    if p.params["tumour_enhancing"]:
        # necrosis is enclosed by the enhancing rim (never touches oedema directly in-plane)
        nec = p.seg == 1
        assert np.all(p.seg[ndimage.binary_dilation(nec)] != 0)
    # the tumour is in the stated hemisphere, inside the brain
    cx = ndimage.center_of_mass(whole)[0]
    assert (cx > (SHAPE[0] - 1) / 2) == (p.params["tumour_side"] == "left")
    assert np.all(np.isin(p.tissue[whole], [MRI_TISSUES[k] for k in ("edema", "necrosis", "enhancing", "non_enhancing")]))


def test_determinism_and_variation(patients):
    a = make_mri_patient(1, seed=0, shape=SHAPE)
    np.testing.assert_array_equal(a.seg, patients[1].seg)
    np.testing.assert_array_equal(a.modalities["t1ce"].array, patients[1].modalities["t1ce"].array)
    b, c = patients[0], patients[2]
    assert np.mean(b.seg != c.seg) > 0.001
    assert b.params["head_scale"] != c.params["head_scale"]
    assert not np.array_equal(b.modalities["flair"].array, c.modalities["flair"].array)


def test_bad_input():
    with pytest.raises(DataError, match="index"):
        make_mri_patient(-2, shape=SHAPE)
    with pytest.raises(DataError, match="field of view"):
        make_mri_patient(0, shape=SHAPE, spacing=(1.0, 1.0, 1.0))


def test_native_mri_writer(tmp_path):
    from semantic_genesis.io.volumes import read_volume

    ids = write_native_mri_cohort(tmp_path, 1, seed=2, shape=(48, 48, 32), progress=False)
    p = make_mri_patient(0, seed=2, shape=(48, 48, 32))
    for seq in SEQUENCES:
        vol = read_volume(tmp_path / "images" / f"{ids[0]}_{seq}.nii.gz")
        np.testing.assert_allclose(vol.array, p.modalities[seq].array, rtol=1e-6)
    seg = read_volume(tmp_path / "labels" / f"{ids[0]}.nii.gz")
    np.testing.assert_array_equal(seg.array.astype(np.uint8), p.seg)
    info = json.loads((tmp_path / "cohort.json").read_text())
    assert info["modality"] == "mri" and info["patients"] == ids
