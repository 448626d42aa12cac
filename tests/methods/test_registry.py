"""Every registered pretraining method, on tiny phantom data: it trains (the loss falls over a short
run of the real engine) and the weights it writes load into the fine-tuning networks.

The phantom cube set (for cube-based methods) and the phantom pattern set (for the methods on
discovered patterns: labels = the coordinate a pattern was cropped at, as self-discovery makes them)
are generated once per session. Methods whose names start with ``test_`` (registered by other tests'
helpers) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from semantic_genesis import methods
from semantic_genesis.config import load_config

CUBE = (16, 16, 8)
RUBIK_CUBE = (32, 32, 16)  # sub-cubes must pass the encoder (multiples of 16)
NUM_CLASSES = 4
STEPS = 40

# pattern-set methods and the overrides of their tiny runs
PATTERN_METHODS = {"semantic_genesis", "semantic_models_genesis", "self_classification", "self_restoration_patterns",
                   "semantic_inpainting", "semantic_patch_shuffling"}

# per-method extra overrides of the tiny run (all fast on one CPU thread)
EXTRA = {
    "rubiks_cube": ["method.options.num_permutations=10", "optim.lr=0.003"],
    "models_genesis": ["transforms.overrides.shuffle_windows=200"],
    # the elastic warp of the Semantic Genesis recipe is huge on 16x16x8 patterns; without it the
    # classifier learns within the short run
    "self_classification": ["transforms.overrides.elastic=false", "train.batch_size=8"],
}

# expected decrease: mean of the last 8 logged losses < FACTOR * mean of the first 8
FACTOR = {"rubiks_cube": 0.97}


# methods trained on their own kind of data instead of cube or pattern sets, tested in their own files
# (PEAC: whole radiographs and a Swin, tests/methods/test_peac*.py; Ark: labelled datasets, tests/methods/test_ark.py)
OWN_DATA = {"peac", "ark"}


def _registry() -> list[str]:
    return [n for n in methods.available() if not n.startswith("test_") and n not in OWN_DATA]


def _phantom_units(n: int, seed: int) -> list[np.ndarray]:
    from semantic_genesis.phantoms.ct import make_ct_patient
    from semantic_genesis.preprocess import ct_to_unit

    return [np.asarray(ct_to_unit(make_ct_patient(i, seed=seed, shape=(56, 56, 40)).volume.array), np.float32)
            for i in range(n)]


@pytest.fixture(scope="session")
def phantoms() -> dict[str, list[np.ndarray]]:
    """6 training and 2 validation phantom CT patients in [0, 1], (64, 64, 40)."""
    units = _phantom_units(8, seed=3)
    return {"train": units[:6], "validation": units[6:]}


def _cube_set(phantoms, root: Path, shape: tuple[int, int, int]) -> Path:
    from semantic_genesis.config import CubesConfig
    from semantic_genesis.cubes import sample_cubes
    from semantic_genesis.io.shards import ShardWriter

    cfg = CubesConfig(cube_size=shape, cubes_per_scan=12, content_test="body", body_min_fraction=0.6,
                      border_fraction=(0.05, 0.05, 0.05))
    writer = ShardWriter(root, "cubes", (1, *shape), dtype="float16")
    for split, units in phantoms.items():
        for k, unit in enumerate(units):
            cubes, records = sample_cubes(unit, cfg, np.random.default_rng(k))
            assert len(cubes) > 0
            writer.add_unit(f"{split}{k}", cubes, records, split=split)
    writer.finish()
    return root


@pytest.fixture(scope="session")
def cube_set(phantoms, tmp_path_factory) -> Path:
    """Cube sets of phantom cubes inside the body (train/validation by patient): ``"small"`` 16x16x8,
    ``"rubik"`` 32x32x16."""
    root = tmp_path_factory.mktemp("baseline_cubes")
    return {"small": _cube_set(phantoms, root / "small", CUBE), "rubik": _cube_set(phantoms, root / "rubik", RUBIK_CUBE)}


@pytest.fixture(scope="session")
def pattern_set(phantoms, tmp_path_factory) -> Path:
    """A pattern set: NUM_CLASSES fixed body-relative coordinates, one 32x32x16 crop per patient and
    coordinate (+ 2 jittered crops in training), label = coordinate index."""
    from semantic_genesis.io.shards import ShardWriter

    root = tmp_path_factory.mktemp("baseline_data") / "patterns"
    writer = ShardWriter(root, "patterns", (1, *CUBE), dtype="float16")
    corners = [(8, 8, 8), (36, 10, 24), (10, 36, 14), (36, 36, 28)]
    rng = np.random.default_rng(0)
    for split, units in phantoms.items():
        for k, unit in enumerate(units):
            items, records = [], []
            for label, corner in enumerate(corners):
                jitters = [(0, 0, 0)] + ([tuple(rng.integers(-2, 3, 3))] * 2 if split == "train" else [])
                for j in jitters:
                    x, y, z = (int(np.clip(c + d, 0, s - w)) for c, d, s, w in zip(corner, j, unit.shape, CUBE))
                    items.append(unit[x:x + CUBE[0], y:y + CUBE[1], z:z + CUBE[2]][None])
                    records.append({"label": label, "position": [x, y, z]})
            writer.add_unit(f"{split}{k}", np.stack(items), records, split=split)
    writer.finish(num_classes=NUM_CLASSES)
    return root


_BASE = [
    "seed=0",
    "model.width=0.125",
    "train.batch_size=4",
    "train.epochs=100",
        f"train.max_steps={STEPS}",
    "train.steps_per_epoch=20",
    "train.val_batches=1",
    "train.log_every=1",
    "train.checkpoint_every=0",
    "train.num_workers=0",
    "train.progress=false",
    "train.tensorboard=false",
    "train.patience=0",
    "train.device=cpu",
    "optim.name=adam",
    "optim.lr=0.002",
    "optim.scheduler=none",
]


def _config(name: str, data: Path, out: Path):
    base = [f"out={out}", f"method.name={name}", *_BASE]
    if name in PATTERN_METHODS:
        base += [f"patterns={data}", "method.options.cls_warmup_epochs=0"]
    else:
        base += [f"data={data}"]
    return load_config(None, base + EXTRA.get(name, []))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {}


def _run(name: str, cube_set: Path, pattern_set: Path, runs: dict, tmp_path_factory):
    """Train ``name`` once per session (shared by the tests below)."""
    if name not in runs:
        from semantic_genesis.training.trainer import train

        data = pattern_set if name in PATTERN_METHODS else cube_set["rubik" if name == "rubiks_cube" else "small"]
        out = tmp_path_factory.mktemp(f"run_{name}")
        runs[name] = train(_config(name, data, out))
    return runs[name]


def test_every_paper_method_is_registered():
    names = set(_registry()) | OWN_DATA
    table2 = {"autoencoder", "inpainting", "patch_shuffling", "rubiks_cube", "models_genesis", "self_classification",
              "semantic_genesis"}
    fig2 = {"semantic_inpainting", "semantic_patch_shuffling", "semantic_models_genesis"}
    assert table2 | fig2 | {"self_restoration_patterns", "ark"} <= names
    for name in names:
        cls = methods.get(name)
        assert cls.name == name and cls.description and cls.__doc__


@pytest.mark.parametrize("name", _registry())
def test_loss_falls_on_phantoms(name, cube_set, pattern_set, runs, tmp_path_factory):
    from semantic_genesis.training.logging import read_metrics

    result = _run(name, cube_set, pattern_set, runs, tmp_path_factory)
    assert result.step == STEPS
    losses = [r["loss"] for r in read_metrics(result.run_dir, "train")]
    assert len(losses) == STEPS and all(np.isfinite(losses))
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < FACTOR.get(name, 0.9) * first, (name, first, last)
    val = read_metrics(result.run_dir, "validation")
    assert val and np.isfinite(val[-1]["loss"])


@pytest.mark.parametrize("name", _registry())
def test_weights_load_into_finetuning_models(name, cube_set, pattern_set, runs, tmp_path_factory):
    from semantic_genesis.finetune import tasks
    from semantic_genesis.finetune.models import InitSpec, build_model
    from semantic_genesis.models import EncoderClassifier3D, load_pretrained
    from semantic_genesis.models.unet3d import ENCODER_PREFIXES
    from semantic_genesis.models.weights import load_weights

    result = _run(name, cube_set, pattern_set, runs, tmp_path_factory)
    path = result.final_weights
    state, meta = load_weights(path)
    assert meta["method"] == name and meta["step"] == STEPS
    encoder = {k: v for k, v in state.items() if k.split(".")[0] in ENCODER_PREFIXES}
    assert encoder and "down_tr64.ops.0.conv1.weight" in encoder
    cfg = _config(name, cube_set["small"], tmp_path_factory.mktemp("unused"))
    for task in ("ncc", "ncs"):  # classification (encoder) and segmentation (encoder [+ decoder])
        model, report = build_model(tasks.get(task), cfg, 1, InitSpec(name, path))
        own = model.state_dict()
        assert set(encoder) <= set(report.loaded), (task, sorted(set(encoder) - set(report.loaded))[:3])
        for key, value in encoder.items():
            assert torch.equal(own[key], value.to(own[key].dtype)), (task, key)
    clf = EncoderClassifier3D(num_classes=2, width=0.125)
    report = load_pretrained(clf, path, strict=False)
    assert set(encoder) <= set(report.loaded)
    assert torch.equal(clf.state_dict()["down_tr512.ops.1.conv1.weight"], encoder["down_tr512.ops.1.conv1.weight"])


@pytest.mark.parametrize("name", ["models_genesis", "inpainting", "semantic_genesis"])
def test_transforms_in_loader_workers_give_the_same_training(name, cube_set, pattern_set, runs, tmp_path_factory):
    """``train.transforms_on=workers`` runs the method's transform in a forked loader worker with the
    generator the step would use: on the CPU the losses are bit-identical to the in-step transform."""
    from semantic_genesis.training.logging import read_metrics
    from semantic_genesis.training.trainer import train

    reference = {r["step"]: r["loss"] for r in read_metrics(_run(name, cube_set, pattern_set, runs, tmp_path_factory).run_dir, "train")}
    data = pattern_set if name in PATTERN_METHODS else cube_set["small"]
    out = tmp_path_factory.mktemp(f"workers_{name}")
    steps = 20  # one epoch, then the validation pass (also made in the workers)
    result = train(load_config(None, [f"out={out}", f"method.name={name}", *_BASE, *(
        [f"patterns={data}", "method.options.cls_warmup_epochs=0"] if name in PATTERN_METHODS else [f"data={data}"]),
        *EXTRA.get(name, []), f"train.max_steps={steps}", "train.transforms_on=workers", "train.num_workers=1"]))
    assert result.step == steps
    losses = {r["step"]: r["loss"] for r in read_metrics(result.run_dir, "train")}
    assert sorted(losses) == list(range(1, steps + 1))
    assert all(losses[s] == reference[s] for s in losses), (losses, {s: reference[s] for s in losses})
    validation = read_metrics(result.run_dir, "validation")
    reference_validation = read_metrics(runs[name].run_dir, "validation")
    assert validation and validation[0]["step"] == reference_validation[0]["step"] == steps
    assert validation[0]["loss"] == reference_validation[0]["loss"]


def test_transforms_in_workers_is_refused_for_a_method_without_prepare_batch(cube_set, tmp_path):
    from semantic_genesis.errors import ConfigError
    from semantic_genesis.training.trainer import train

    assert not methods.get("rubiks_cube").can_prepare_in_workers()
    assert methods.get("semantic_inpainting").can_prepare_in_workers()
    cfg = load_config(None, [f"out={tmp_path / 'run'}", "method.name=rubiks_cube", f"data={cube_set['rubik']}", *_BASE,
                             *EXTRA["rubiks_cube"], "train.transforms_on=workers"])
    with pytest.raises(ConfigError, match="transforms_on=workers: method 'rubiks_cube'"):
        train(cfg)
