"""The resumable discovery pipeline end to end on the phantom cohort, and its bad-input errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from semantic_genesis.discovery.neighbours import nearest
from semantic_genesis.discovery.pipeline import run_discovery
from semantic_genesis.errors import CheckpointError, ConfigError, DataError
from semantic_genesis.io.shards import ShardedArray

from .conftest import tiny_config

QUIET = {"log": lambda s: None}


def _pattern_arrays(root):
    store = ShardedArray(root)
    return np.stack([store.item(i) for i in range(len(store))]), store.all_records()


def test_neighbours_are_closer_in_feature_space_and_alike_in_body_size(discovered, body_sizes):
    ids = [i for i, s in zip(discovered.ids, discovered.splits) if s == "train"]
    f = discovered.features[[discovered.ids.index(i) for i in ids]]
    assert f.shape == (10, 64)  # 16 * round(32 * 0.125) channels of the bottleneck
    size = np.array([body_sizes[i] for i in ids])
    _, idx = nearest(f, f, 4)
    near_feat, rand_feat, near_body, rand_body = [], [], [], []
    for r in range(len(ids)):
        others = np.delete(np.arange(len(ids)), r)
        near_feat.append(np.linalg.norm(f[idx[r, 1:]] - f[r], axis=1).mean())
        rand_feat.append(np.linalg.norm(f[others] - f[r], axis=1).mean())
        near_body.append(np.abs(size[idx[r, 1:]] - size[r]).mean())
        rand_body.append(np.abs(size[others] - size[r]).mean())
    print("feature distance near/random", np.mean(near_feat), np.mean(rand_feat))
    print("body-size difference near/random", np.mean(near_body), np.mean(rand_body))
    assert np.mean(near_feat) < 0.9 * np.mean(rand_feat)
    assert np.mean(near_body) < 0.85 * np.mean(rand_body)  # neighbours in feature space are anatomically closer
    # the plan's neighbour lists are exactly these nearest patients
    g = discovered.groups[0]
    r = ids.index(g.reference)
    assert set(g.neighbours) == {ids[j] for j in idx[r, :4]} | set(g.neighbours[4:])


def test_interrupted_discovery_resumes_to_the_same_pattern_set(cohort, discovered, tmp_path):
    cfg = tiny_config()
    run_discovery(cfg, cohort, tmp_path, stop_after={"ae_epochs": 2}, **QUIET)  # killed during the AE
    assert not (tmp_path / "patterns").exists()
    run_discovery(cfg, cohort, tmp_path, stop_after={"classes": 2}, **QUIET)  # killed after 2 classes
    assert not ShardedArray(tmp_path / "patterns", require_complete=False).manifest["complete"]
    result = run_discovery(cfg, cohort, tmp_path, **QUIET)
    a, rec_a = _pattern_arrays(result.patterns)
    b, rec_b = _pattern_arrays(discovered.patterns)
    key = lambda r: (r["label"], r["patient"], r["resolution"], r["unit"])  # noqa: E731
    order_a = sorted(range(len(rec_a)), key=lambda i: key(rec_a[i]))
    order_b = sorted(range(len(rec_b)), key=lambda i: key(rec_b[i]))
    assert [rec_a[i] for i in order_a] == [rec_b[i] for i in order_b]
    np.testing.assert_array_equal(a[order_a], b[order_b])  # bit-identical crops


def test_rerunning_a_finished_run_skips_every_stage(cohort, discovered, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(discovered.run_dir, run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != "config.yaml"}
    messages = []
    run_discovery(tiny_config(), cohort, run, log=messages.append)
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != "config.yaml"}
    assert before == after
    assert not any("autoencoder epoch" in m for m in messages)


def test_per_class_strategy_end_to_end(cohort, discovered, tmp_path):
    weights = discovered.run_dir / "discovery" / "autoencoder" / "weights" / "best.safetensors"
    cfg = tiny_config("discovery.strategy=per_class", "discovery.num_classes=4", f"discovery.ae_weights={weights}")
    result = run_discovery(cfg, cohort, tmp_path, **QUIET)
    assert [g.labels for g in result.groups] == [[0], [1], [2], [3]]
    assert len({g.reference for g in result.groups}) == 4
    records = ShardedArray(result.patterns, split="train").all_records()
    assert sorted({r["label"] for r in records}) == [0, 1, 2, 3]
    np.testing.assert_array_equal(result.features, discovered.features)  # same autoencoder, same features


def test_k_larger_than_the_cohort_fails_before_any_work(cohort, tmp_path):
    with pytest.raises(ConfigError, match=r"K=50 is larger than the 10 train patients"):
        run_discovery(tiny_config("discovery.num_neighbours=50"), cohort, tmp_path, **QUIET)
    assert not (tmp_path / "discovery" / "scans").exists()


def test_coordinates_that_cannot_be_placed_give_a_data_error(cohort, discovered, tmp_path):
    weights = discovered.run_dir / "discovery" / "autoencoder" / "weights" / "best.safetensors"
    # at 7.5 mm voxels the phantoms' lungs hold vessels: no 16^3 window passes the official lung test
    cfg = tiny_config("discovery.content_test=lung", "discovery.max_coordinate_trials=300",
                      f"discovery.ae_weights={weights}")
    with pytest.raises(DataError, match=r"could place only 0 of discovery.num_classes=6 .* 'lung' .*content test.*discovery.content_test=body"):
        run_discovery(cfg, cohort, tmp_path, **QUIET)


def test_autoencoder_checkpoint_of_the_wrong_size(cohort, discovered, tmp_path):
    weights = discovered.run_dir / "discovery" / "autoencoder" / "weights" / "best.safetensors"
    cfg = tiny_config("discovery.ae_input_size=[48,48,24]", f"discovery.ae_weights={weights}")
    with pytest.raises(CheckpointError, match=r"input_size=\[32, 32, 16\] \(config wants \[48, 48, 24\]\)"):
        run_discovery(cfg, cohort, tmp_path / "a", **QUIET)
    # a resume state of another size in the run folder is refused the same way
    shutil.copytree(discovered.run_dir / "discovery" / "autoencoder", tmp_path / "b" / "discovery" / "autoencoder")
    with pytest.raises(CheckpointError, match=r"last.pt: autoencoder checkpoint does not match.*input_size"):
        run_discovery(tiny_config("discovery.ae_input_size=[48,48,24]"), cohort, tmp_path / "b", **QUIET)


def test_changed_settings_in_an_existing_run_are_refused(cohort, discovered, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(discovered.run_dir, run)
    with pytest.raises(ConfigError, match="pattern set was made with other discovery settings"):
        run_discovery(tiny_config("discovery.num_resolutions=2"), cohort, run, **QUIET)


def test_discover_command(cohort, discovered, tmp_path, capsys):
    from semantic_genesis.cli import main
    from .conftest import TINY

    run = tmp_path / "run"
    shutil.copytree(discovered.run_dir, run)
    assert main(["discover", f"data={cohort}", f"out={run}", *TINY]) == 0
    assert "pattern set:" in capsys.readouterr().out
    assert main(["discover", f"data={cohort}", f"out={tmp_path / 'x'}", *TINY, "discovery.num_neighbours=11"]) == 2
    assert "error: discovery.num_neighbours K=11" in capsys.readouterr().err
