"""The label spaces of the public chest X-ray datasets computed from phantom findings."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.io.datasets.chexpert import CHEXPERT_LABELS
from semantic_genesis.io.datasets.vindr_cxr import VINDR_LABELS, merge_readings
from semantic_genesis.phantoms import xray_labels as xl
from semantic_genesis.phantoms.xray import FINDINGS


def _random_findings(rng, rate=0.3):
    return tuple(f for f in FINDINGS if rng.random() < rate)


def test_chestxray14_and_chexpert_truth():
    assert xl.chestxray14_labels(["Tuberculosis", "Effusion"]) == ("Effusion", "Infiltration")
    assert xl.chestxray14_labels(FINDINGS[:14]) == FINDINGS[:14]
    truth = xl.chexpert_truth(["Nodule", "Effusion", "Hernia"])
    assert list(truth) == list(CHEXPERT_LABELS)
    assert {k for k, v in truth.items() if v} == {"Lung Lesion", "Pleural Effusion", "Enlarged Cardiomediastinum"}
    assert xl.chexpert_truth([])["No Finding"] == 1
    # emphysema is not a CheXpert observation: the image counts as "No Finding" there
    assert xl.chexpert_truth(["Emphysema"])["No Finding"] == 1
    assert xl.chexpert_truth(["Fibrosis"])["Lung Opacity"] == 1 and xl.chexpert_truth(["Fibrosis"])["No Finding"] == 0


def test_chexpert_labeler_uncertainty_blanks_and_hedges():
    clear = xl.chexpert_report_codes(["Effusion", "Cardiomegaly"], {"Effusion": 0.9, "Cardiomegaly": 0.1}, np.random.default_rng(0))
    assert clear["Pleural Effusion"] == 1 and clear["Cardiomegaly"] == -1  # subtle -> uncertain
    assert clear["Enlarged Cardiomediastinum"] == -1 and clear["No Finding"] is None
    assert clear["Fracture"] is None and clear["Support Devices"] is None  # never mentioned
    rng = np.random.default_rng(1)
    reports = [xl.chexpert_report_codes([], {}, rng) for _ in range(2000)]
    assert all(r["No Finding"] == 1 for r in reports if all(v in (0, None) for k, v in r.items() if k != "No Finding"))
    negatives = np.mean([r["Lung Lesion"] == 0 for r in reports])
    hedges = np.mean([r["Pneumonia"] == -1 for r in reports])
    assert abs(negatives - xl.P_EXPLICIT_NEGATIVE) < 0.03 and abs(hedges - xl.P_HEDGE) < 0.015
    assert all(r["Lung Lesion"] in (0, None) for r in reports)  # never hedged
    a = xl.chexpert_report_codes(["Edema"], {"Edema": 0.5}, np.random.default_rng(5))
    assert a == xl.chexpert_report_codes(["Edema"], {"Edema": 0.5}, np.random.default_rng(5))


def test_vindr_radiologists_majority_recovers_truth():
    rng = np.random.default_rng(2)
    no_finding = VINDR_LABELS.index("No finding")
    disagreements = 0
    for _ in range(300):
        findings = _random_findings(rng)
        severity = {f: float(rng.random()) for f in findings}
        truth = np.array([xl.vindr_truth(findings)[n] for n in VINDR_LABELS], dtype=np.float32)
        readings = xl.vindr_readings(findings, severity, rng)
        assert len(readings) == 3 and len({rad for rad, _ in readings}) == 3
        votes = np.array([[labels[n] for n in VINDR_LABELS] for _, labels in readings])
        for row in votes:  # each reader's "No finding" is consistent with what it reported
            assert row[no_finding] == int(not np.delete(row, no_finding).any())
        np.testing.assert_array_equal(merge_readings(votes, "majority", no_finding), truth)
        union, both = merge_readings(votes, "any", no_finding), merge_readings(votes, "all", no_finding)
        assert np.all(np.delete(union, no_finding) >= np.delete(truth, no_finding)) and np.all(both <= truth)
        disagreements += int(not (votes == votes[0]).all())
    assert disagreements > 30  # the erring reader does err
    truth = xl.vindr_truth(["Mass", "Emphysema", "Hernia"])
    assert {k for k, v in truth.items() if v} == {"Nodule/Mass", "Lung tumor", "Emphysema", "COPD", "Other lesion", "Other diseases"}
    assert {k for k, v in xl.vindr_truth([]).items() if v} == {"No finding"}


def test_rsna_classes_and_boxes():
    assert xl.rsna_class([]) == "Normal" and xl.rsna_class(["Edema"]) == "No Lung Opacity/Not Normal"
    assert xl.rsna_class(["Edema", "Consolidation"]) == "Lung Opacity"
    mask = np.zeros((40, 50), bool)
    mask[5:15, 10:20] = True
    other = np.zeros((40, 50), bool)
    other[25:35, 30:48] = True
    other[0, 0] = True  # a speck below 5 % of the opacity: no box of its own
    boxes = xl.opacity_boxes({"Pneumonia": mask, "Consolidation": other, "Edema": ~mask}, (40, 50))
    assert boxes == [(30, 25, 18, 10), (10, 5, 10, 10)]
    assert xl.opacity_boxes({"Edema": mask}, (40, 50)) == []


@pytest.mark.parametrize("finding", FINDINGS)
def test_every_finding_has_a_label_in_every_multi_label_space(finding):
    assert xl.chestxray14_labels([finding])
    assert sum(v for k, v in xl.vindr_truth([finding]).items() if k != "No finding") >= 1
    assert xl.rsna_class([finding]) != "Normal"
    in_chexpert = any(finding in source for source in xl.CHEXPERT_FROM_FINDINGS.values())
    assert in_chexpert == (finding != "Emphysema")  # CheXpert has no emphysema observation
