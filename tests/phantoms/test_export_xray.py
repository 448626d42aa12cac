"""The phantom radiograph cohort exported in each public layout and read back by the real readers:
the labels read back equal the generated findings under each dataset's mapping."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.errors import ConfigError
from semantic_genesis.io.datasets.chexpert import CHEXPERT_LABELS
from semantic_genesis.io.datasets.cxr import read_labelled_images
from semantic_genesis.io.datasets.vindr_cxr import VINDR_LABELS
from semantic_genesis.phantoms import xray_labels as xl
from semantic_genesis.phantoms.export import export_xray_cohort
from semantic_genesis.phantoms.export_xray import held_out_split, mimic_split, siim_uids
from semantic_genesis.phantoms.xray import draw_xray_spec, radiograph_from_spec
from semantic_genesis.utils.seeding import derive_seed

N, SEED, RATE = 6, 4, 0.5
CT_SHAPE, SIZE = (64, 64, 48), (64, 64)
EXPORT = {"seed": SEED, "shape": CT_SHAPE, "size": SIZE, "finding_rate": RATE}


@pytest.fixture(scope="module")
def cohort():
    """What each patient should be: its spec and radiograph, generated independently of the export."""
    out = []
    for i in range(N):
        spec = draw_xray_spec(i, SEED, RATE)
        out.append((spec, radiograph_from_spec(i, SEED, spec, CT_SHAPE, SIZE)))
    return out


def _export(tmp_path_factory, layout):
    root = tmp_path_factory.mktemp(layout)
    result = export_xray_cohort(root, N, layout=layout, **EXPORT)
    assert result.patients == N and result.written == N and all(p.is_file() for p in result.files)
    return root


def _image_close(read, rg, jpeg=False):
    expected = np.clip(rg.image, 0, 1)
    if jpeg:  # lossy: close on average, small errors at edges
        assert read.shape == expected.shape and np.abs(read - expected).mean() < 0.01 and np.abs(read - expected).max() < 0.15
    else:
        np.testing.assert_allclose(read, expected, atol=0.5 / 255 + 1e-6)


def test_chestxray14(tmp_path_factory, cohort):
    from semantic_genesis.io.datasets.chestxray14 import CHESTXRAY14_LABELS

    root = _export(tmp_path_factory, "chestxray14")
    ds = read_labelled_images("chestxray14", root, "all")
    assert ds.image_ids == tuple(f"{i + 1:08d}_000.png" for i in range(N))
    for i, (spec, rg) in enumerate(cohort):
        expected = [float(n in xl.chestxray14_labels(xl.positives(rg.labels))) for n in CHESTXRAY14_LABELS]
        np.testing.assert_array_equal(ds.labels[i], expected)
        assert ds.sex[i] == spec.sex and ds.age[i] == spec.age and ds.views[i] == spec.view
        _image_close(ds.read_image(i), rg)
    test = read_labelled_images("chestxray14", root, "test")
    assert test.image_ids == tuple(f"{i + 1:08d}_000.png" for i in range(N) if held_out_split(i))


def test_chexpert_labeler_and_radiologist_labels(tmp_path_factory, cohort):
    root = _export(tmp_path_factory, "chexpert")
    train = read_labelled_images("chexpert", root, "train", uncertain="ignore", blank="ignore")
    valid = read_labelled_images("chexpert", root, "valid")
    assert len(train) + len(valid) == N and len(valid) == sum(bool(held_out_split(i)) for i in range(N))
    codes = {"1": 1, "0": 0, "-1": -1}
    for ds in (train, valid):
        for k, pid in enumerate(ds.patient_ids):
            i = int(pid.removeprefix("patient")) - 1
            spec, rg = cohort[i]
            findings = xl.positives(rg.labels)
            assert ds.sex[k] == spec.sex and ds.age[k] == spec.age and ds.views[k] == spec.view
            if ds is train:  # the simulated report labeler: 1, 0, -1 and blank (NaN under "ignore")
                rng = np.random.default_rng(derive_seed(SEED, i, "chexpert-report"))
                report = xl.chexpert_report_codes(findings, rg.severity, rng)
                for j, name in enumerate(CHEXPERT_LABELS):
                    value = ds.labels[k, j]
                    if report[name] in (None, -1):
                        assert np.isnan(value)
                    else:
                        assert value == codes[str(report[name])]
            else:  # radiologist labels: exact
                np.testing.assert_array_equal(ds.labels[k], [xl.chexpert_truth(findings)[n] for n in CHEXPERT_LABELS])
            _image_close(ds.read_image(k), rg, jpeg=True)
    assert train.notes["uncertain_count"] + train.notes["blank_count"] > 0


def test_mimic_cxr(tmp_path_factory, cohort):
    root = _export(tmp_path_factory, "mimic_cxr")
    ds = read_labelled_images("mimic_cxr", root, "all", patients=root / "hosp" / "patients.csv.gz", uncertain="ones")
    assert len(ds) == N and ds.label_names == tuple(sorted(CHEXPERT_LABELS))
    assert {p.parent.parent.parent.name for p in ds.paths} <= {f"p1{d}" for d in range(10)}
    for i, (spec, rg) in enumerate(cohort):
        findings = xl.positives(rg.labels)
        # ones policy, blank -> 0: positive exactly where the labeler said 1 or -1
        truth_like = [float(xl.chexpert_truth(findings)[n] or 0) for n in ds.label_names]
        labels = ds.labels[i]
        assert ds.sex[i] == spec.sex and ds.age[i] == spec.age and ds.views[i] == spec.view
        _image_close(ds.read_image(i), rg, jpeg=True)
        for j, name in enumerate(ds.label_names):
            code = int(ds.extras["codes"][i, j])
            assert labels[j] == float(code in (1, -1))
            if truth_like[j] and name != "No Finding":
                assert code in (1, -1)  # a present finding is always mentioned
    for split in ("train", "validate", "test"):
        part = read_labelled_images("mimic_cxr", root, split) if any(mimic_split(i) == split for i in range(N)) else None
        if part is not None:
            assert len(part) == sum(mimic_split(i) == split for i in range(N))


def test_vindr_cxr_radiologists(tmp_path_factory, cohort):
    root = _export(tmp_path_factory, "vindr_cxr")
    train = read_labelled_images("vindr_cxr", root, "train")  # majority of three radiologists
    test = read_labelled_images("vindr_cxr", root, "test")
    assert len(train) + len(test) == N and set(train.extras["radiologists"]) == {3}
    by_id = {}
    for ds in (train, test):
        for k, image_id in enumerate(ds.image_ids):
            by_id[image_id] = (ds, k)
    union = read_labelled_images("vindr_cxr", root, "train", merge="any")
    demo = read_labelled_images("vindr_cxr", root, "train", dicom_header_demographics=True)
    assert train.sex is None and set(demo.sex) <= {"M", "F"} and np.all((demo.age >= 18) & (demo.age < 90))
    for i, (spec, rg) in enumerate(cohort):
        truth = xl.vindr_truth(xl.positives(rg.labels))
        matches = [(ds, k) for image_id, (ds, k) in by_id.items() if ds.read_image(k).shape == SIZE and np.allclose(ds.read_image(k), np.clip(rg.image, 0, 1), atol=0.51 / 255)]
        assert len(matches) == 1  # MONOCHROME1 files are inverted back on reading
        ds, k = matches[0]
        assert ds.split == (held_out_split(i) or "train")
        np.testing.assert_array_equal(ds.labels[k], [truth[n] for n in VINDR_LABELS])
        if ds is train:
            no_finding = VINDR_LABELS.index("No finding")
            assert np.all(np.delete(union.labels[k], no_finding) >= np.delete(ds.labels[k], no_finding))
    ark = read_labelled_images("vindr_cxr", root, "train", labels="ark")
    assert ark.num_classes == 6


def test_rsna_pneumonia_boxes_and_classes(tmp_path_factory, cohort):
    root = _export(tmp_path_factory, "rsna_pneumonia")
    binary = read_labelled_images("rsna_pneumonia", root, dicom_header_demographics=True)
    three = read_labelled_images("rsna_pneumonia", root, variant="3class")
    assert len(binary) == N and three.image_ids == binary.image_ids
    for i, (spec, rg) in enumerate(cohort):
        findings = xl.positives(rg.labels)
        expected = xl.rsna_class(findings)
        assert three.label_names[three.class_indices()[i]] == expected
        assert binary.labels[i, 0] == float(expected == "Lung Opacity")
        assert binary.sex[i] == spec.sex and binary.age[i] == spec.age  # from the DICOM headers
        boxes = binary.extras["boxes"][i]
        assert bool(boxes) == (expected == "Lung Opacity")
        opacity = np.zeros(SIZE, bool)
        for name in xl.RSNA_OPACITY_FINDINGS:
            opacity |= rg.finding_masks.get(name, np.zeros(SIZE, bool))
        for x, y, w, h in boxes:
            assert 0 <= x and 0 <= y and x + w <= SIZE[1] and y + h <= SIZE[0]
            assert opacity[int(y) : int(y + h), int(x) : int(x + w)].any()
        _image_close(binary.read_image(i), rg)


def test_shenzhen(tmp_path_factory, cohort):
    root = _export(tmp_path_factory, "shenzhen")
    ds = read_labelled_images("shenzhen", root)
    assert ds.patient_ids == tuple(f"{i + 1:04d}" for i in range(N))
    for i, (spec, rg) in enumerate(cohort):
        assert ds.labels[i, 0] == float(rg.labels["Tuberculosis"])
        assert ds.sex[i] == spec.sex and ds.age[i] == spec.age


def test_siim_masks(tmp_path_factory, cohort):
    from semantic_genesis.io.datasets.siim_acr import SiimAcrDataset

    root = _export(tmp_path_factory, "siim")
    ds = SiimAcrDataset(root)
    assert ds.image_ids() == [siim_uids(SEED, i)[2] for i in range(N)]
    import pydicom

    for i, (spec, rg) in enumerate(cohort):
        sample = ds.load(siim_uids(SEED, i)[2])
        np.testing.assert_array_equal(sample.mask, rg.pneumothorax_mask)
        _image_close(sample.image, rg)
        header = pydicom.dcmread(sample.path, stop_before_pixels=True)
        assert header.PatientSex == spec.sex and header.ViewPosition == spec.view and header.Modality == "CR"


def test_workers_resume_and_settings(tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    export_xray_cohort(one, 4, layout="rsna_pneumonia", **EXPORT)
    result = export_xray_cohort(two, 4, layout="rsna_pneumonia", workers=2, **EXPORT)
    assert result.written == 4
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    again = export_xray_cohort(one, 5, layout="rsna_pneumonia", **EXPORT)  # extends the cohort
    assert again.written == 1 and len(read_labelled_images("rsna_pneumonia", one)) == 5
    with pytest.raises(ConfigError, match="different settings"):
        export_xray_cohort(one, 5, layout="rsna_pneumonia", **{**EXPORT, "finding_rate": 0.1})
    with pytest.raises(ConfigError, match=r"female_fraction must be in \[0, 1\]"):
        export_xray_cohort(tmp_path / "x", 2, layout="shenzhen", female_fraction=2.0)
    with pytest.raises(ConfigError, match="unknown X-ray layout 'padchest'"):
        export_xray_cohort(tmp_path / "x", 2, layout="padchest")


def test_cli_exports_a_layout(tmp_path, capsys):
    from semantic_genesis.cli import main

    argv = ["phantom", "xray", "--patients", "3", "--out", str(tmp_path / "sz"), "--layout", "shenzhen",
            "--shape", "64", "64", "48", "--size", "64", "64", "--quiet"]
    assert main(argv) == 0
    assert "3 patients in shenzhen layout" in capsys.readouterr().out
    assert len(read_labelled_images("shenzhen", tmp_path / "sz")) == 3
