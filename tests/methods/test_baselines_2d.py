"""The restoration baselines (autoencoder, in-painting, patch-shuffling) on a 2D patch set: the recipe
takes the set's dimensionality, a few training steps run with a 2D network (in the step and in the
loader workers alike), and each recipe's pair has its method's structure on ``(B, 1, H, W)`` batches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from semantic_genesis import methods
from semantic_genesis.config import load_config
from semantic_genesis.errors import DataError
from semantic_genesis.io.shards import ShardWriter
from semantic_genesis.models import load_weights
from semantic_genesis.training.logging import read_metrics
from semantic_genesis.training.trainer import train

SIZE = (32, 32)
BASELINES = ["autoencoder", "inpainting", "patch_shuffling"]


def _blobs(n: int, seed: int) -> np.ndarray:
    """``(n, 1, 32, 32)`` images in [0, 1]: a few Gaussian blobs on a grey background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(SIZE[0]), np.arange(SIZE[1]), indexing="ij")
    out = np.full((n, 1, *SIZE), 0.2, dtype=np.float32)
    for i in range(n):
        for _ in range(3):
            cy, cx = rng.uniform(0, SIZE[0]), rng.uniform(0, SIZE[1])
            out[i, 0] += 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2.0, 5.0) ** 2))
    return np.clip(out, 0, 1)


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    """A 2D patch set (items ``(1, 32, 32)``, the layout ``semantic-genesis cubes`` writes for 2D sources)."""
    root = tmp_path_factory.mktemp("baselines2d") / "patches"
    writer = ShardWriter(root, "cubes", (1, *SIZE), dtype="float16")
    writer.add_unit("train_patient", _blobs(32, 0), [{"patient": "p0"}] * 32, split="train")
    writer.add_unit("val_patient", _blobs(8, 1), [{"patient": "p1"}] * 8, split="validation")
    writer.finish()
    return root


def _config(name: str, patches: Path, out: Path | None, *overrides: str):
    return load_config(None, [
        f"method.name={name}", f"data={patches}", *([f"out={out}"] if out else []), "cubes.cube_size=[32,32]",
        "model.name=unet2d", "model.width=0.125", "model.norm=batch_stats", "model.out_activation=sigmoid",
        "train.batch_size=4", "train.steps_per_epoch=4", "train.max_steps=4", "train.epochs=1", "train.val_batches=1",
        "train.num_workers=0", "train.device=cpu", "train.progress=false", "train.tensorboard=false", "train.log_every=1",
        "optim.name=adam", "optim.lr=0.001", "optim.scheduler=none", *overrides,
    ])


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_on_a_2d_patch_set(name, patches, tmp_path):
    run = tmp_path / "run"
    result = train(_config(name, patches, run))
    assert result.step == 4 and result.epoch == 1
    losses = [r["loss"] for r in read_metrics(run, "train")]
    assert len(losses) == 4 and all(math.isfinite(v) and v > 0 for v in losses)
    (val,) = read_metrics(run, "validation")
    assert math.isfinite(val["loss"])
    state, meta = load_weights(run / "weights" / "final.safetensors")
    assert meta["method"] == name and meta["input_size"] == [32, 32]
    assert all(t.dim() in (1, 4) for k, t in state.items() if k.endswith("weight"))  # 2D kernels only


def test_2d_baseline_in_the_loader_workers_gives_the_same_losses(patches, tmp_path):
    runs = {}
    for where, workers in (("device", 0), ("workers", 1)):
        train(_config("patch_shuffling", patches, tmp_path / where, f"train.transforms_on={where}",
                      f"train.num_workers={workers}"))
        runs[where] = [r["loss"] for r in read_metrics(tmp_path / where, "train")]
    assert len(runs["device"]) == 4 and runs["device"] == runs["workers"]


@pytest.mark.parametrize("name", BASELINES)
def test_2d_recipe_pairs_keep_their_structure(name, patches):
    method = methods.build(_config(name, patches, None))
    train_set, _ = method.build_datasets()
    assert method.spatial_dims == 2 and method.preset.spatial_dims == 2
    images = torch.stack([train_set[i]["image"] for i in range(4)])
    assert images.shape == (4, 1, *SIZE)
    pair = method.prepare_batch({"image": images}, torch.Generator().manual_seed(0))
    again = method.prepare_batch({"image": images}, torch.Generator().manual_seed(0))
    assert all(torch.equal(pair[k], again[k]) for k in pair)  # seeded
    inputs, targets = pair["input"], pair["target"]
    assert inputs.shape == targets.shape == images.shape and torch.equal(targets, images)
    if name == "autoencoder":
        assert torch.equal(inputs, images)
    elif name == "inpainting":
        mask = pair["mask"]
        assert mask.shape == (4, 1, *SIZE) and mask.dtype == torch.bool
        assert bool(mask.flatten(1).any(1).all())  # every image lost at least one box
        assert torch.equal(inputs[~mask], images[~mask])  # the context is kept
        fill = images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images)
        assert torch.equal(inputs[mask], fill[mask])  # dropped pixels hold the image's mean
    else:
        changed = (inputs != images).flatten(1).any(1)
        assert bool(changed.all())
        # swapping patches moves pixels, never changes them: the same values per image
        assert torch.equal(inputs.flatten(1).sort(1).values, images.flatten(1).sort(1).values)
    # the recipe keeps the batch contract: a 2D recipe refuses a 3D batch
    with pytest.raises(DataError, match="spatial_dims=2 expected a batch"):
        method.preset(torch.rand(2, 1, 8, 8, 8), torch.Generator().manual_seed(0))
