"""A pretrained encoder fine-tuned at a lower learning rate (``finetune.encoder_lr_scale``) or frozen for
the first epochs (``finetune.freeze_encoder_epochs``): the optimiser's groups, which parameters move in
each phase, the batch-norm statistics of a frozen encoder, exact resume mid-freeze, scratch unaffected,
and the one-line errors."""

import math

import pytest
import torch

from semantic_genesis.config import replace
from semantic_genesis.errors import ConfigError
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.data import FinetuneBatches, split_by_patient
from semantic_genesis.finetune.models import InitSpec
from semantic_genesis.finetune.protocol import equal_steps_config, sweep_settings
from semantic_genesis.finetune.trainer import EncoderSchedule, _setup, check_config, encoder_schedule, run_finetune
from semantic_genesis.methods.finetune import Finetune
from semantic_genesis.models.unet3d import UNet3D
from semantic_genesis.models.weights import save_weights
from semantic_genesis.training.checkpoint import load_checkpoint
from semantic_genesis.training.logging import read_metrics
from semantic_genesis.training.trainer import train

from .conftest import blob_task, tiny_config
from .test_engine_finetune import _interrupt_at

ENCODER = ("down_tr64.", "down_tr128.", "down_tr256.", "down_tr512.")
LR = 0.003


def _weights(tmp_path):
    torch.manual_seed(7)
    net = UNet3D(width=0.125)
    with torch.no_grad():  # pretrained-looking BN statistics, so that an update of them shows
        for name, t in net.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                t.add_(torch.rand_like(t))
    return save_weights(net, tmp_path / "pre.safetensors", {"method": "models_genesis"})


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, after, encoder):
    """Names of the (encoder or other) tensors that differ between two snapshots."""
    return {k for k in before if k.startswith(ENCODER) == encoder and not torch.equal(before[k], after[k])}


def _train(tmp_path, name, cfg, init, data, split, seed=3):
    """Train through the engine and return the network's state before training and after every epoch."""
    setup, _ = _setup(tasks.get("ncc"), data, split, cfg, init, seed)
    states = [_snapshot(setup.model)]
    run_cfg = replace(cfg, out=str(tmp_path / name), seed=seed)
    train(run_cfg, Finetune(run_cfg, setup), log="epochs", on_epoch=lambda record: states.append(_snapshot(setup.model)))
    return states


@pytest.fixture(scope="module")
def blobs():
    data = blob_task("classification", n=48)
    return data, split_by_patient(data, seed=0)


def test_the_pretrained_encoder_arrives_in_the_network(tmp_path, blobs):
    path = _weights(tmp_path)
    from semantic_genesis.models.weights import load_weights

    stored, _ = load_weights(path)
    setup, report = _setup(tasks.get("ncc"), *blobs, tiny_config(), InitSpec("mg", path), 0)
    state = setup.model.state_dict()
    encoder = [k for k in state if k.startswith(ENCODER)]
    assert encoder and len(report.loaded) == len(encoder)
    for key in encoder:  # every encoder tensor, BN statistics included, is the file's
        assert torch.equal(state[key], stored[key]), key


def test_freeze_then_unfreeze_moves_the_right_parameters(tmp_path, blobs):
    cfg = tiny_config("train.epochs=2", "finetune.freeze_encoder_epochs=1", f"optim.lr={LR}")
    start, frozen, unfrozen = _train(tmp_path, "run", cfg, InitSpec("mg", _weights(tmp_path)), *blobs)
    # epoch 0: the encoder (weights and BN statistics) is the pretrained one, the head trains
    assert _changed(start, frozen, encoder=True) == set()
    assert any(k.startswith("head.") for k in _changed(start, frozen, encoder=False))
    # epoch 1: the encoder trains, its BN statistics too
    moved = _changed(frozen, unfrozen, encoder=True)
    assert any(k.endswith(".weight") for k in moved) and any(k.endswith("running_mean") for k in moved)
    assert all(any(k.startswith(p) for k in moved) for p in ENCODER)


def test_encoder_lr_scale_gives_two_groups_and_smaller_encoder_steps(tmp_path, blobs):
    cfg = tiny_config("train.epochs=1", "train.max_steps=1", "finetune.encoder_lr_scale=0.1", f"optim.lr={LR}")
    path = _weights(tmp_path)
    setup, _ = _setup(tasks.get("ncc"), *blobs, cfg, InitSpec("mg", path), 3)
    method = Finetune(cfg, setup)
    groups = method.param_groups(setup.model)
    names = {id(p): n for n, p in setup.model.named_parameters()}
    assert [g.get("lr") for g in groups] == [None, pytest.approx(LR * 0.1)]
    assert {names[id(p)] for p in groups[1]["params"]} == {n for n in names.values() if n.startswith(ENCODER)}
    assert {names[id(p)] for p in groups[0]["params"]} == {n for n in names.values() if not n.startswith(ENCODER)}

    before = _snapshot(setup.model)
    run_cfg = replace(cfg, out=str(tmp_path / "run"), seed=3)
    train(run_cfg, method, log="epochs")
    after = _snapshot(setup.model)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["optimizer"]["param_groups"]
    assert [g["lr"] for g in saved] == [pytest.approx(LR), pytest.approx(LR * 0.1)]
    # Adam's first step moves every parameter with a gradient by about its group's lr (sign of the gradient)
    params = {n for n, _ in setup.model.named_parameters()}
    step = {k: float((after[k] - before[k]).abs().max()) for k in params}
    encoder = [step[k] for k in step if k.startswith(ENCODER)]
    rest = [step[k] for k in step if not k.startswith(ENCODER)]
    assert max(encoder) == pytest.approx(LR * 0.1, rel=1e-3)
    assert max(rest) == pytest.approx(LR, rel=1e-3)


def test_resume_in_the_middle_of_the_frozen_epochs_is_exact(tmp_path, monkeypatch, blobs):
    data, split = blobs
    task, init = tasks.get("ncc"), InitSpec("mg", _weights(tmp_path))
    cfg = tiny_config("train.epochs=3", "train.checkpoint_every=1", "finetune.freeze_encoder_epochs=2",
                      "finetune.encoder_lr_scale=0.3")
    spe = FinetuneBatches(data, split["train"], 8, 2).num_batches
    whole = run_finetune(task, data, split, cfg, init, tmp_path / "whole", seed=2)
    _interrupt_at(monkeypatch, spe + 2)  # dies in epoch 1, batch 1: the encoder still frozen
    with pytest.raises(KeyboardInterrupt):
        run_finetune(task, data, split, cfg, init, tmp_path / "cut", seed=2)
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["progress"]
    assert (saved["epoch"], saved["batch"]) == (1, 1)
    resumed = run_finetune(task, data, split, cfg, init, tmp_path / "cut", seed=2)
    assert resumed.test == whole.test and resumed.best_epoch == whole.best_epoch
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")
    from semantic_genesis.models.weights import load_weights

    a, meta = load_weights(tmp_path / "whole" / "weights" / "best.safetensors")
    b, _ = load_weights(tmp_path / "cut" / "weights" / "best.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (meta["encoder_lr_scale"], meta["freeze_encoder_epochs"]) == (0.3, 2)


def test_scratch_ignores_the_encoder_schedule(tmp_path, blobs):
    cfg = tiny_config("finetune.encoder_lr_scale=0.1", "finetune.freeze_encoder_epochs=2")
    assert encoder_schedule(cfg, InitSpec("scratch")) == EncoderSchedule()
    assert encoder_schedule(cfg, InitSpec("mg", tmp_path / "w.safetensors")) == EncoderSchedule(0.1, 2)
    setup, _ = _setup(tasks.get("ncc"), *blobs, cfg, InitSpec("scratch"), 0)
    assert Finetune(cfg, setup).param_groups(setup.model) is None
    assert Finetune(cfg, setup).frozen_parameters(setup.model, 0) == ()
    plain, _ = _setup(tasks.get("ncc"), *blobs, tiny_config(), InitSpec("scratch"), 0)
    assert all(torch.equal(v, plain.model.state_dict()[k]) for k, v in setup.model.state_dict().items())


@pytest.mark.parametrize("overrides,message", [
    (["finetune.encoder_lr_scale=0"], "encoder_lr_scale must be a number > 0, got 0"),
    (["finetune.encoder_lr_scale=-0.5"], "encoder_lr_scale must be a number > 0"),
    (["finetune.encoder_lr_scale=.nan"], "encoder_lr_scale must be a number > 0"),
    (["train.epochs=3", "finetune.freeze_encoder_epochs=3"], r"freeze_encoder_epochs must be in \[0, train.epochs\) = \[0, 3\), got 3"),
    (["finetune.freeze_encoder_epochs=-1"], "freeze_encoder_epochs must be in"),
    (["finetune.freeze_encoder=true", "finetune.freeze_encoder_epochs=1"], "apply to fine-tuning only"),
    (["finetune.freeze_encoder=true", "finetune.encoder_lr_scale=0.1"], "apply to fine-tuning only"),
])
def test_bad_settings_give_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        check_config(tiny_config(*overrides))
    assert "\n" not in str(err.value)


def test_the_linear_probe_mode_refuses_an_encoder_schedule():
    with pytest.raises(ConfigError, match="evaluate the probe without them"):
        sweep_settings(tiny_config("finetune.modes=[finetune,linear_probe]", "finetune.freeze_encoder_epochs=1"))
    assert sweep_settings(tiny_config("finetune.modes=[finetune]", "finetune.encoder_lr_scale=0.1")) == [("finetune", 1.0)]


def test_equal_steps_keeps_the_frozen_share_of_the_run():
    cfg = tiny_config("finetune.equal_steps=true", "train.epochs=10", "finetune.freeze_encoder_epochs=3")
    scaled = equal_steps_config(cfg, full_train=40, kept_train=10)
    assert (scaled.train.epochs, scaled.finetune.freeze_encoder_epochs) == (40, 12)
    assert math.isclose(scaled.finetune.freeze_encoder_epochs / scaled.train.epochs, 0.3)


def test_recalibrated_norms_normalise_the_training_crops(tmp_path, blobs):
    data, split = blobs
    path = _weights(tmp_path)  # running statistics far from the crops' (see _weights)
    cfg = tiny_config("finetune.freeze_encoder=true", "finetune.head=linear", "finetune.recalibrate_norm=true")
    setup, _ = _setup(tasks.get("ncc"), data, split, cfg, InitSpec("mg", path), 0)
    plain, _ = _setup(tasks.get("ncc"), data, split, replace(cfg, **{"finetune.recalibrate_norm": False}),
                      InitSpec("mg", path), 0)
    assert setup.metadata["recalibrated_norms"] == 8 and plain.metadata["recalibrated_norms"] == 0
    keys = [k for batch in setup.batches(0, 0, 1) for k in batch]  # the crops of epoch 0
    images = torch.stack([setup.train_set[k]["image"] for k in keys])
    seen = {}

    def normalised(model):
        bn = model.down_tr64.ops[0].bn1
        hook = bn.register_forward_hook(lambda m, i, o: seen.update(x=(i[0] - m.running_mean[:, None, None, None])
                                                                     / (m.running_var[:, None, None, None] + m.eps).sqrt()))
        model.eval()
        with torch.no_grad():
            model(images)
        hook.remove()
        x = seen["x"].transpose(0, 1).reshape(bn.num_features, -1)
        return x.mean(dim=1), x.var(dim=1)

    mean, var = normalised(setup.model)
    assert mean.abs().max() < 1e-3 and (var - 1).abs().max() < 0.02  # the crops' own statistics
    mean, var = normalised(plain.model)
    assert mean.abs().max() > 0.1  # the pretrained ones do not fit them
    state, before = setup.model.state_dict(), plain.model.state_dict()
    changed = {k for k in state if not torch.equal(state[k], before[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert all(m.momentum == 0.1 for m in setup.model.modules() if isinstance(m, torch.nn.BatchNorm3d))


def test_recalibration_is_ignored_without_a_frozen_encoder(tmp_path, blobs):
    cfg = tiny_config("finetune.recalibrate_norm=true", "finetune.freeze_encoder_epochs=1")
    scratch, _ = _setup(tasks.get("ncc"), *blobs, cfg, InitSpec("scratch"), 0)  # scratch: nothing frozen
    pre, _ = _setup(tasks.get("ncc"), *blobs, cfg, InitSpec("mg", _weights(tmp_path)), 0)
    assert scratch.metadata["recalibrated_norms"] == 0 and pre.metadata["recalibrated_norms"] == 8
