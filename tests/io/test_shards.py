import json

import numpy as np
import pytest

from semantic_genesis.errors import DataError
from semantic_genesis.io.shards import ShardedArray, ShardWriter


def _items(n, seed, shape=(1, 4, 5, 3)):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


@pytest.mark.parametrize("dtype, tol", [("float16", 1e-3), ("uint8", 0.5 / 255 + 1e-6)])
def test_round_trip_values_records_and_splits(tmp_path, dtype, tol):
    writer = ShardWriter(tmp_path, "cubes", (1, 4, 5, 3), dtype=dtype, attrs={"seed": 3})
    a, b = _items(3, 0), _items(2, 1)
    writer.add_unit("scan_a", a, [{"pos": [i, 0, 0]} for i in range(3)], split="train")
    writer.add_unit("scan_b", b, [{"pos": [i, 1, 0]} for i in range(2)], split="validation")
    writer.finish(total=5)

    store = ShardedArray(tmp_path)
    assert len(store) == 5
    np.testing.assert_allclose(np.stack([store.item(i) for i in range(5)]), np.concatenate([a, b]), atol=tol)
    assert store.record(4) == {"pos": [1, 1, 0], "unit": "scan_b"}
    val = ShardedArray(tmp_path, split="validation", kind="cubes")
    assert len(val) == 2 and val.item(0).dtype == np.float32
    assert store.manifest["complete"] and store.manifest["attrs"] == {"seed": 3, "total": 5}


def test_resume_skips_completed_units_and_removes_orphans(tmp_path):
    writer = ShardWriter(tmp_path, "cubes", (1, 4, 5, 3))
    writer.add_unit("scan_a", _items(2, 0), [{}, {}])
    # A killed run leaves an unlisted shard file behind: it must be cleaned, never read.
    np.save(tmp_path / "shard_00001.npy", _items(7, 2))
    resumed = ShardWriter(tmp_path, "cubes", (1, 4, 5, 3))
    assert resumed.completed_units() == {"scan_a"}
    assert not (tmp_path / "shard_00001.npy").exists()
    resumed.add_unit("scan_b", _items(1, 3), [{}])
    assert len(ShardedArray(tmp_path, require_complete=False)) == 3
    with pytest.raises(DataError, match="already written"):
        resumed.add_unit("scan_b", _items(1, 3), [{}])


def test_errors_name_the_problem(tmp_path):
    writer = ShardWriter(tmp_path, "cubes", (1, 4, 5, 3))
    with pytest.raises(DataError, match=r"shape \(2, 1, 4, 5\), expected \(N, 1, 4, 5, 3\)"):
        writer.add_unit("bad", np.zeros((2, 1, 4, 5)), [{}, {}])
    bad = _items(1, 0)
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        writer.add_unit("nan", bad, [{}])
    with pytest.raises(DataError, match="existing store has kind='cubes'"):
        ShardWriter(tmp_path, "patterns", (1, 4, 5, 3))
    writer.add_unit("ok", _items(1, 0), [{}])
    writer.finish()
    (tmp_path / "shard_00000.npy").unlink()
    with pytest.raises(DataError, match="shard_00000.npy: shard listed in the manifest is missing"):
        ShardedArray(tmp_path)
    with pytest.raises(DataError, match="not a cube/pattern store"):
        ShardedArray(tmp_path / "nowhere")


def test_shard_shape_mismatch_is_detected(tmp_path):
    writer = ShardWriter(tmp_path, "cubes", (1, 4, 5, 3))
    writer.add_unit("a", _items(2, 0), [{}, {}])
    writer.finish()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["shards"][0]["count"] = 3
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    store = ShardedArray(tmp_path)
    with pytest.raises(DataError, match="manifest says"):
        store.item(0)


def test_truncated_shard_is_a_clear_error(tmp_path):
    writer = ShardWriter(tmp_path, "cubes", (1, 4, 5, 3))
    writer.add_unit("a", _items(3, 0), [{}, {}, {}])
    writer.finish()
    path = tmp_path / "shard_00000.npy"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError, match="shard_00000.npy: unreadable shard .*header promises"):
        ShardedArray(tmp_path).item(0)


def test_reads_do_not_keep_items_mapped_and_survive_pickling(tmp_path):
    import pickle

    writer = ShardWriter(tmp_path, "cubes", (1, 4, 5, 3))
    items = _items(4, 5)
    writer.add_unit("a", items, [{}] * 4)
    writer.finish()
    store = ShardedArray(tmp_path)
    np.testing.assert_allclose(store.item(3), items[3], atol=1e-3)
    clone = pickle.loads(pickle.dumps(store))  # what a spawned DataLoader worker receives
    np.testing.assert_allclose(clone.item(2), items[2], atol=1e-3)
    first = store.item(0)
    first += 1  # items are private copies: writing to them never touches the store
    np.testing.assert_allclose(store.item(0), items[0], atol=1e-3)
    store.close()
    np.testing.assert_allclose(store.item(1), items[1], atol=1e-3)


def test_an_incomplete_store_is_refused_naming_the_missing_scans_and_the_command(tmp_path):
    root = tmp_path / "cubes"
    planned = [f"p{i}" for i in range(6)]
    writer = ShardWriter(root, "cubes", (1, 4, 5, 3), attrs={"source": "/data/ct", "planned": planned})
    for pid in ("p0", "p1", "p2"):  # a cubes run killed after 3 of 6 scans
        writer.add_unit(f"{pid}/{pid}.nii.gz", _items(2, 0), [{}, {}])
    expected = (
        rf"{root}: the cube set is incomplete \(its manifest says complete: false; 3 of 6 scans done; "
        rf"missing: p3, p4, p5\); complete it with `semantic-genesis cubes --data /data/ct --out {root}` "
        r"and the same config \(the rerun resumes\)$"
    )
    for split in (None, "train", "validation"):
        with pytest.raises(DataError, match=expected):
            ShardedArray(root, split=split, kind="cubes")
    assert len(ShardedArray(root, require_complete=False)) == 6  # looking at a store being written is fine
    writer.finish()
    assert len(ShardedArray(root)) == 6


def test_an_incomplete_pattern_set_says_how_many_classes_and_how_to_finish(tmp_path):
    root = tmp_path / "run" / "patterns"
    writer = ShardWriter(root, "patterns", (1, 4, 5, 3), attrs={"source": "/data/ct", "num_classes": 4})
    writer.add_unit("class_00000", _items(1, 0), [{}], split="train")
    writer.add_unit("class_00000_val", _items(1, 1), [{}], split="validation")
    with pytest.raises(DataError, match=rf"the pattern set is incomplete \(its manifest says complete: false; 1 of 4 "
                                        rf"classes written\); complete it with `semantic-genesis discover data=/data/ct "
                                        rf"out={tmp_path / 'run'}` and the same config"):
        ShardedArray(root, kind="patterns")
