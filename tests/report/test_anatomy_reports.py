"""PEAC's anatomy analyses: best buddies, cell labels, the label agreement measure, k-means, and the
``report correspondences`` / ``report cosegmentation`` commands on phantom radiographs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from semantic_genesis.cli import main
from semantic_genesis.report._embeddings import (PHANTOM_ANATOMY, cell_labels, kmeans, label_agreement,
                                                 mutual_nearest_neighbours, phantom_anatomy)


def test_best_buddies_are_mutual_nearest_neighbours():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(25, 8, generator=g), dim=1)
    i, j, s = mutual_nearest_neighbours(a, b)
    sim = a @ b.T
    expected = {(p, q) for p in range(30) for q in range(25)
                if sim[p].argmax() == q and sim[:, q].argmax() == p}
    assert set(zip(i.tolist(), j.tolist())) == expected and len(expected) > 0
    assert torch.all(s[:-1] >= s[1:])
    # a permuted copy: every descriptor is its copy's best buddy, similarity 1
    perm = torch.randperm(30, generator=g)
    i, j, s = mutual_nearest_neighbours(a, a[perm])
    assert len(i) == 30 and torch.equal(perm[j], i) and torch.allclose(s, torch.ones(30))


def test_cell_labels_take_the_majority():
    lab = np.zeros((8, 8), int)
    lab[:4, :4] = 2
    lab[0, 4:] = 1  # a quarter of the top-right cell only
    assert cell_labels(lab, (2, 2)).tolist() == [[2, 0], [0, 0]]


def test_label_agreement_of_label_embeddings_and_chance():
    labels = np.array([[0, 0, 1, 1], [2, 2, 3, 3]])
    one_hot = torch.eye(4)[torch.from_numpy(labels)]  # (2, 4, 4): embedding = the label
    other = labels[:, ::-1].copy()
    result = label_agreement(one_hot, torch.eye(4)[torch.from_numpy(other)], labels, other)
    assert result["agreement"] == 1.0 and result["chance"] == pytest.approx(4 * (2 / 8) ** 2)
    shuffled = label_agreement(one_hot, torch.eye(4)[torch.from_numpy(other)], labels, np.zeros_like(labels))
    assert shuffled["agreement"] == pytest.approx(0.25)


def test_kmeans_separates_clear_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.05, (20, 2)) for c in (0.0, 5.0, 10.0)])
    assignment = kmeans(x, 3, seed=0)
    assert len({tuple(assignment[k * 20:(k + 1) * 20]) for k in range(3)}) == 3
    assert all(len(set(assignment[k * 20:(k + 1) * 20])) == 1 for k in range(3))


@pytest.fixture(scope="module")
def phantom_pngs(tmp_path_factory):
    from semantic_genesis.io.images2d import Image2D, write_image2d
    from semantic_genesis.models import create, save_weights
    from semantic_genesis.phantoms.xray import make_xray_cohort

    root = tmp_path_factory.mktemp("anatomy")
    cohort = make_xray_cohort(3, seed=0, ct_shape=(64, 64, 48), size=(64, 64))
    paths = []
    for r in cohort:
        paths.append(root / f"{r.patient_id}.png")
        write_image2d(Image2D(r.image), paths[-1], value_range=(0.0, 1.0))
    torch.manual_seed(0)
    weights = save_weights(create("swin2d", size="tiny"), root / "swin.safetensors", metadata={"method": "test"})
    return paths, weights, cohort


def test_phantom_anatomy_labels(phantom_pngs):
    _, _, cohort = phantom_pngs
    labels = phantom_anatomy(cohort[0])
    assert labels.shape == (64, 64) and set(np.unique(labels)) == set(range(len(PHANTOM_ANATOMY)))
    assert (labels == 1).sum() > 0 and (labels[:, 32:] == 1).sum() == 0  # right lung on the image's left half


def test_correspondences_and_cosegmentation_commands(phantom_pngs, tmp_path):
    paths, weights, _ = phantom_pngs
    assert main(["report", "correspondences", str(weights), str(paths[0]), str(paths[1]), "--size", "64",
                 "--pairs", "5", "--out", str(tmp_path / "c")]) == 0
    data = json.loads((tmp_path / "c" / "correspondences.json").read_text())
    assert data["grid"] == [8, 8] and data["stride"] == 8 and len(data["pairs"]) >= 1
    assert (tmp_path / "c" / "correspondences.png").stat().st_size > 1000
    assert main(["report", "cosegmentation", str(weights), *map(str, paths), "--size", "64", "--clusters", "4",
                 "--out", str(tmp_path / "s")]) == 0
    maps = np.array(json.loads((tmp_path / "s" / "cosegmentation.json").read_text())["maps"])
    assert maps.shape == (3, 8, 8) and set(np.unique(maps)) <= set(range(4)) and len(np.unique(maps)) > 1
    assert (tmp_path / "s" / "cosegmentation.png").is_file()
    assert main(["report", "cosegmentation", str(weights), str(paths[0]), "--out", str(tmp_path / "x")]) != 0
