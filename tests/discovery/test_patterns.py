"""Pattern crops and the pattern set: labels = coordinates, provenance, multi-resolution."""

from __future__ import annotations

import numpy as np

from semantic_genesis.discovery.coordinates import corner_to_relative, volume_frame
from semantic_genesis.discovery.patterns import crop_patterns
from semantic_genesis.io.shards import ShardedArray, read_manifest


def test_base_crop_is_the_exact_sub_volume():
    rng = np.random.default_rng(0)
    vol = rng.random((40, 36, 30)).astype(np.float32)
    frame = volume_frame(vol.shape)
    corners = np.array([[3, 5, 7], [20, 10, 2]])
    coords = corner_to_relative(corners, frame, (16, 16, 8))
    items, meta = crop_patterns(vol, frame, coords, (16, 16, 8), 1)
    assert items.shape == (2, 1, 16, 16, 8) and items.dtype == np.float32
    np.testing.assert_array_equal(items[0, 0], vol[3:19, 5:21, 7:15])
    np.testing.assert_array_equal(items[1, 0], vol[20:36, 10:26, 2:10])
    assert [m["corner"] for m in meta] == corners.tolist()


def test_multiresolution_crops_are_resized_and_centred():
    vol = np.zeros((64, 64, 20), np.float32)
    vol[24:40, 24:40, :] = 1.0  # a bright square centred on the crop
    frame = volume_frame(vol.shape)
    coords = corner_to_relative(np.array([[24, 24, 4]]), frame, (16, 16, 8))
    items, meta = crop_patterns(vol, frame, coords, (16, 16, 8), 3, size_range=(24, 32), jitter=0,
                                rng=np.random.default_rng(3))
    assert items.shape == (3, 1, 16, 16, 8)
    assert [m["resolution"] for m in meta] == [0, 1, 2]
    for m, item in zip(meta[1:], items[1:]):
        side = m["scale"][0]
        assert 24 <= side <= 32 and m["corner"][2] == 4
        # a zoomed-out view: the bright square fills about (16 / side)^2 of the crop, centred
        frac = item.mean()
        assert abs(frac - (16 / side) ** 2) < 0.12
        centre = item[0, 6:10, 6:10, :].mean()
        assert centre > 0.99
    assert items.min() >= 0 and items.max() <= 1


def test_multiresolution_draws_are_reproducible():
    vol = np.random.default_rng(0).random((48, 48, 24)).astype(np.float32)
    frame = volume_frame(vol.shape)
    coords = np.array([[0.5, 0.5, 0.5]])
    a, _ = crop_patterns(vol, frame, coords, (16, 16, 8), 3, (12, 20), 2, np.random.default_rng(7))
    b, _ = crop_patterns(vol, frame, coords, (16, 16, 8), 3, (12, 20), 2, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_pattern_set_labels_come_from_one_coordinate_of_different_patients(discovered):
    store = ShardedArray(discovered.patterns, split="train", kind="patterns")
    records = store.all_records()
    groups = {lab: g for g in discovered.groups for lab in g.labels}
    assert sorted({r["label"] for r in records}) == list(range(6))
    assert len(records) == 6 * 6 * 3  # C * K * resolutions
    for lab, g in groups.items():
        rows = [r for r in records if r["label"] == lab]
        base = [r for r in rows if r["resolution"] == 0]
        assert sorted(r["patient"] for r in base) == sorted(g.neighbours)  # K different patients
        assert {tuple(r["coordinate"]) for r in rows} == {tuple(np.round(g.coordinates[g.labels.index(lab)], 6))}
        assert {r["reference"] for r in rows} == {g.reference}


def test_crops_sharing_a_label_are_more_alike_than_crops_of_different_labels(discovered):
    store = ShardedArray(discovered.patterns, split="train", kind="patterns")
    records = store.all_records()
    idx = [i for i, r in enumerate(records) if r["resolution"] == 0]
    x = np.stack([store.item(i).ravel() for i in idx])
    labels = np.array([records[i]["label"] for i in idx])
    d = ((x[:, None, :] - x[None, :, :]) ** 2).mean(axis=2)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(idx), dtype=bool)
    within, between = d[same & off].mean(), d[~same].mean()
    assert within < 0.7 * between, (within, between)


def test_validation_patterns_come_from_the_nearest_validation_patients(discovered):
    val = ShardedArray(discovered.patterns, split="validation", kind="patterns")
    val_ids = {pid for pid, s in zip(discovered.ids, discovered.splits) if s == "validation"}
    records = val.all_records()
    assert len(records) == 6 * 2  # C * num_val_neighbours, base resolution only
    for g in discovered.groups:
        for lab in g.labels:
            rows = [r for r in records if r["label"] == lab]
            assert sorted(r["patient"] for r in rows) == sorted(g.val_neighbours)
            assert {r["patient"] for r in rows} <= val_ids
            assert all(r["resolution"] == 0 for r in rows)
    train_ids = {r["patient"] for r in ShardedArray(discovered.patterns, split="train").all_records()}
    assert not train_ids & val_ids


def test_manifest_records_provenance(discovered):
    manifest = read_manifest(discovered.patterns)
    attrs = manifest["attrs"]
    assert manifest["complete"] and manifest["kind"] == "patterns"
    assert manifest["item_shape"] == [1, 16, 16, 16] and manifest["dtype"] == "float16"
    assert attrs["num_classes"] == 6 and attrs["num_train"] == 108 and attrs["num_validation"] == 12
    assert attrs["references"] == [g.reference for g in discovered.groups]
    assert len(attrs["groups"]) == 2  # paper strategy: 3 classes per reference
    assert all(len(g["neighbours"]) == 6 for g in attrs["groups"])
