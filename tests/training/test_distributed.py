"""DistributedDataParallel: a 2-process gloo run keeps identical weights on both ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semantic_genesis.training.data import EpochSampler, ValidationBatches
from semantic_genesis.training.logging import read_metrics

from .helpers import make_cube_store

TESTS_DIR = Path(__file__).resolve().parents[1]

_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
import training.helpers as h
from semantic_genesis.training.trainer import train
out = sys.argv[2]
result = train(h.tiny_config(sys.argv[1], out, "train.epochs=2", "train.batch_size=2"))
torch.save({k: v.detach().cpu() for k, v in result.model.named_parameters()}, f"{out}/params_rank{os.environ['RANK']}.pt")
"""


def test_ranks_split_every_global_batch_exactly():
    ranks = [EpochSampler(10, 3, 4, seed=5, rank=r, world_size=2) for r in range(2)]
    single = EpochSampler(10, 6, 4, seed=5)
    for epoch in (0, 3):
        parts = [s.epoch_indices(epoch).reshape(4, 3) for s in ranks]
        whole = single.epoch_indices(epoch).reshape(4, 6)
        for b in range(4):
            assert sorted(parts[0][b].tolist() + parts[1][b].tolist()) == sorted(whole[b].tolist())
            assert set(parts[0][b]).isdisjoint(parts[1][b]) or len(set(whole[b])) < 6
    assert not (ranks[0].epoch_indices(0) == ranks[0].epoch_indices(1)).all()  # a new order each epoch
    val = [list(ValidationBatches(11, 4, 0, r, 2)) for r in range(2)]
    assert val[0] == [[0, 1, 2, 3], [8, 9, 10]] and val[1] == [[4, 5, 6, 7]]


@pytest.mark.ddp
def test_two_process_gloo_run_keeps_identical_weights(tmp_path):
    store = make_cube_store(tmp_path / "cubes", n_train=16, n_val=4)
    out = tmp_path / "run"
    out.mkdir()
    script = tmp_path / "ddp_script.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(TESTS_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(store), str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0 = torch.load(out / "params_rank0.pt")
    p1 = torch.load(out / "params_rank1.pt")
    assert p0.keys() == p1.keys()
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
    start = read_metrics(out, "event")[0]
    assert start["world_size"] == 2 and start["steps_per_epoch"] == 4  # 16 cubes / (2 per rank x 2 ranks)
    train = read_metrics(out, "train")
    assert [r["step"] for r in train] == list(range(1, 9))  # only rank 0 writes
    initial_loss, final_loss = train[0]["loss"], train[-1]["loss"]
    assert final_loss < initial_loss
