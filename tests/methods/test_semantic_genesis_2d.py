"""Semantic Genesis 2D and its ablations on the 2D U-Net and the ResNet-18 U-Net: presets, the head and the
gradients of each branch in 2D, and every tiny 2D preset pretraining through the CLI on discovered patterns."""

from __future__ import annotations

import pytest
import torch

from semantic_genesis import methods
from semantic_genesis.cli import main
from semantic_genesis.config import load_config
from semantic_genesis.errors import ConfigError
from semantic_genesis.methods.base import StepContext
from semantic_genesis.training.data import collate

C = 4


@pytest.fixture(scope="module")
def patterns(tmp_path_factory):
    """2D patterns discovered on 12 phantom radiographs (32x32, C=4, K=6, 2 resolutions)."""
    from semantic_genesis.discovery.pipeline import run_discovery
    from semantic_genesis.phantoms.cohort import write_native_xray_cohort

    root = tmp_path_factory.mktemp("sg2d_method")
    write_native_xray_cohort(root / "xray", 12, seed=0, ct_shape=(64, 64, 48), size=(96, 96), progress=False)
    cfg = load_config("semantic_genesis_2d_tiny", [
        "train.device=cpu", "discovery.progress=false", "discovery.ae_input_size=[32,32]", "discovery.ae_epochs=1",
        "discovery.pattern_size=[32,32]", "discovery.num_neighbours=6", f"discovery.num_classes={C}",
        "discovery.classes_per_reference=2", "discovery.multires_size_range=[25,39]", "discovery.multires_jitter=3",
        "discovery.body_min_fraction=0.6",
    ])
    return run_discovery(cfg, root / "xray", root / "run", log=lambda s: None).patterns


def _cfg(patterns, *overrides):
    return load_config("semantic_genesis_2d_tiny", [
        f"patterns={patterns}", "train.device=cpu", "train.batch_size=8", "train.progress=false",
        "train.tensorboard=false", "seed=0", *overrides,
    ])


def _batch(method, n=8):
    train, _ = method.build_datasets()
    return collate([train[i] for i in range(0, len(train), max(1, len(train) // n))][:n])


def _ctx(epoch):
    return StepContext(epoch=epoch, step=0, batch_index=0, device=torch.device("cpu"),
                       generator=torch.Generator().manual_seed(0), training=True)


def test_presets():
    paper = load_config("semantic_genesis_2d")
    d = paper.discovery
    assert (d.num_neighbours, d.num_classes, d.classes_per_reference) == (1000, 100, 100)  # K, C (paper)
    assert d.pattern_size == (224, 224) and d.num_resolutions == 3 and d.ae_model == "unet2d"
    assert d.multires_size_range == (175, 276) and d.ae_input_size == (256, 256)
    assert paper.model.name == "resunet2d" and paper.method.name == "semantic_genesis"
    assert paper.method.options == {"lambda_rec": 1.0, "lambda_cls": 0.01, "cls_warmup_epochs": 20}
    assert (paper.optim.name, paper.optim.lr, paper.optim.step_size, paper.optim.gamma) == ("adam", 0.001, 40, 0.5)
    tiny = load_config("semantic_genesis_2d_tiny")
    assert tiny.discovery.pattern_size == (64, 64) and tiny.model.width == 0.125 and tiny.model.name == "resunet2d"
    for name, method in (("self_classification", "self_classification"), ("self_restoration", "self_restoration_patterns")):
        assert load_config(f"{name}_2d").method.name == method
        assert load_config(f"{name}_2d").discovery == paper.discovery
        assert load_config(f"{name}_2d_tiny").method.name == method
    assert load_config("autoencoder_2d").method.name == "autoencoder"
    assert load_config("autoencoder_2d_tiny").cubes.cube_size == (64, 64)


@pytest.mark.parametrize("backbone", ["resunet2d", "unet2d"])
def test_2d_head_and_gradients_of_each_branch(patterns, backbone):
    method = methods.build(_cfg(patterns, f"model.name={backbone}", "method.options.cls_warmup_epochs=1"))
    model = method.build_model()
    assert type(model).__name__ == "YNet" and model.backbone.spatial_dims == 2 and model.num_classes == C
    batch = _batch(method)
    assert batch["image"].shape == (8, 1, 32, 32)
    out = model(batch["image"])
    assert out.restoration.shape == (8, 1, 32, 32) and out.logits.shape == (8, C)
    decoder = set(method.frozen_parameters(model, 0))
    params = dict(model.named_parameters())
    head = {n for n in params if n.startswith("clc_out")}
    assert decoder and head and not decoder & head
    # warm-up: CE alone; the decoder gets no gradient, the encoder and the head do
    step = method.training_step(model, batch, _ctx(epoch=0))
    step.loss.backward()
    assert step.loss.item() == pytest.approx(step.metrics["ce"], rel=1e-6)
    assert all(params[n].grad is None for n in decoder)
    encoder = [n for n in params if n not in decoder and n not in head]
    assert encoder and all(params[n].grad is not None for n in encoder + sorted(head))
    assert all(params[n].grad.abs().sum() > 0 for n in sorted(head))
    # joint: L = MSE + lambda_cls * CE reaches the decoder too
    model.zero_grad(set_to_none=True)
    step = method.training_step(model, batch, _ctx(epoch=1))
    step.loss.backward()
    assert step.loss.item() == pytest.approx(step.metrics["mse"] + 0.1 * step.metrics["ce"], rel=1e-5)
    assert list(method.frozen_parameters(model, 1)) == []
    assert all(params[n].grad is not None and params[n].grad.abs().sum() > 0 for n in decoder if n.endswith("weight"))


def test_2d_ablations_train_one_branch(patterns):
    cls_method = methods.build(_cfg(patterns, "method.name=self_classification"))
    model = cls_method.build_model()
    assert type(model).__name__ == "EncoderClassifier" and model.spatial_dims == 2
    out = cls_method.training_step(model, _batch(cls_method), _ctx(epoch=0))
    assert set(out.metrics) == {"ce", "accuracy"} and out.loss.item() == pytest.approx(out.metrics["ce"])
    rec_method = methods.build(_cfg(patterns, "method.name=self_restoration_patterns", "model.name=unet2d"))
    model = rec_method.build_model()
    assert type(model).__name__ == "UNet2D"
    out = rec_method.training_step(model, _batch(rec_method), _ctx(epoch=0))
    assert set(out.metrics) == {"mse"} and out.loss.item() == pytest.approx(out.metrics["mse"])
    # a semantics add-on of another restoration method restores in 2D too
    inp = methods.build(_cfg(patterns, "method.name=semantic_inpainting", "transforms.preset=models_genesis"))
    x, y = inp.make_pair(_batch(inp)["image"], torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 1, 32, 32) and not torch.equal(x, y)


@pytest.mark.parametrize("preset", ["semantic_genesis_2d_tiny", "self_classification_2d_tiny", "self_restoration_2d_tiny"])
def test_tiny_2d_presets_pretrain_through_the_cli(patterns, tmp_path, preset):
    from semantic_genesis.models import load_weights
    from semantic_genesis.training.logging import read_metrics

    run = tmp_path / "run"
    assert main(["pretrain", "--config", preset, f"patterns={patterns}", f"out={run}", "train.epochs=2",
                 "train.steps_per_epoch=2", "method.options.cls_warmup_epochs=1", "train.progress=false", "train.log_every=1",
                 "train.device=cpu"]) == 0
    assert len(read_metrics(run, "train")) >= 1 and len(read_metrics(run, "validation")) == 2
    state, meta = load_weights(run / "weights" / "final.safetensors")
    assert meta["input_size"] == [32, 32]
    assert all(t.dim() in (1, 2, 4) for k, t in state.items() if k.endswith("weight"))  # 2D kernels (+ linear head)
    head = {"semantic_genesis_2d_tiny": "clc_out.", "self_classification_2d_tiny": "head."}.get(preset)
    assert any(k.startswith(("clc_out.", "head.")) for k in state) == (head is not None)
    assert head is None or any(k.startswith(head) for k in state)


def test_2d_patterns_need_a_2d_network(patterns):
    method = methods.build(_cfg(patterns, "model.name=unet3d", "model.norm=batch_stats"))
    with pytest.raises(ConfigError, match=r"2D patterns \(items \(1, 32, 32\)\) cannot train model.name=unet3d \(3D\); "
                                          r"use model.name=resunet2d or unet2d"):
        method.build_model()
