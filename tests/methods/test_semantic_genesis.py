"""Semantic Genesis training: YNet3D, loss, classification warm-up, ablations, engine runs, weights."""

from __future__ import annotations

import shutil

import pytest
import torch

from semantic_genesis import methods
from semantic_genesis.config import load_config
from semantic_genesis.errors import DataError
from semantic_genesis.methods.base import StepContext
from semantic_genesis.methods.semantic_genesis import SemanticAddon
from semantic_genesis.models import create
from semantic_genesis.training.data import collate

C = 5  # classes of the fixture pattern set


@pytest.fixture(scope="module")
def patterns(tmp_path_factory):
    """A small pattern set discovered from 14 phantoms (16^3 patterns, C=5, K=5, 2 resolutions; 4 validation
    patients x 5 classes = 20 validation patterns, enough for an accuracy well above chance to mean something)."""
    from semantic_genesis.discovery.pipeline import run_discovery
    from semantic_genesis.phantoms.cohort import write_native_ct_cohort

    root = tmp_path_factory.mktemp("sg_method")
    write_native_ct_cohort(root / "scans", 14, seed=1, shape=(48, 48, 40), progress=False)
    cfg = load_config(None, [
        "train.device=cpu", "discovery.progress=false", "discovery.ae_input_size=[16,16,8]",
        "discovery.ae_width=0.125", "discovery.ae_epochs=1", "discovery.val_fraction=0.3",
        "discovery.pattern_size=[16,16,16]", "discovery.num_neighbours=5", "discovery.num_val_neighbours=4",
        f"discovery.num_classes={C}", f"discovery.classes_per_reference={C}", "discovery.num_resolutions=2",
        "discovery.multires_size_range=[12,20]", "discovery.multires_jitter=2", "discovery.content_test=body",
        "discovery.body_min_fraction=0.6",
    ])
    return run_discovery(cfg, root / "scans", root / "run", log=lambda s: None).patterns


def _cfg(patterns, *overrides):
    return load_config(None, [
        f"patterns={patterns}", "method.name=semantic_genesis", "model.width=0.125", "train.device=cpu",
        "train.batch_size=8", "train.num_workers=0", "train.progress=false", "seed=0", *overrides,
    ])


def _batch(method, n=8):
    train, _ = method.build_datasets()
    return collate([train[i] for i in range(0, len(train), max(1, len(train) // n))][:n])


def _ctx(epoch, training=True):
    return StepContext(epoch=epoch, step=0, batch_index=0, device=torch.device("cpu"),
                       generator=torch.Generator().manual_seed(0), training=training)


def _grads(model, prefixes):
    return [p.grad for n, p in model.named_parameters() if n.startswith(prefixes)]


def test_methods_are_registered():
    names = methods.available()
    for name in ("semantic_genesis", "self_classification", "self_restoration_patterns"):
        assert name in names
    assert issubclass(methods.get("self_classification"), SemanticAddon)


def test_warmup_trains_the_classification_branch_alone(patterns):
    method = methods.build(_cfg(patterns, "method.options.cls_warmup_epochs=2"))
    model = method.build_model()
    # the generic YNet on the 3D U-Net: the official Semantic Genesis YNet3D keys
    assert type(model).__name__ == "YNet" and type(model.backbone).__name__ == "UNet3D" and model.num_classes == C
    assert list(model.state_dict()) == list(create("ynet3d", width=0.125, num_classes=C).state_dict())
    batch = _batch(method)
    out = method.training_step(model, batch, _ctx(epoch=1))
    out.loss.backward()
    decoder = _grads(model, ("up_tr", "out_tr"))
    assert decoder and all(g is None for g in decoder)  # the restoration branch gets no gradient
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(model, ("down_tr", "clc_out")))
    assert "mse" not in out.metrics and out.loss.item() == pytest.approx(out.metrics["ce"], rel=1e-6)
    frozen = list(method.frozen_parameters(model, 1))
    assert frozen and all(n.startswith(("up_tr", "out_tr")) for n in frozen)
    assert set(frozen) == {n for n, _ in model.named_parameters() if n.startswith(("up_tr", "out_tr"))}
    assert list(method.frozen_parameters(model, 2)) == []
    # after the warm-up: joint loss, the decoder learns
    model.zero_grad(set_to_none=True)
    out = method.training_step(model, batch, _ctx(epoch=2))
    out.loss.backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(model, ("up_tr", "out_tr")))
    expected = 1.0 * out.metrics["mse"] + 0.01 * out.metrics["ce"]
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_zero_warmup_is_joint_from_the_start(patterns):
    method = methods.build(_cfg(patterns, "method.options.cls_warmup_epochs=0", "method.options.lambda_cls=0.5"))
    model = method.build_model()
    out = method.training_step(model, _batch(method), _ctx(epoch=0))
    assert out.loss.item() == pytest.approx(out.metrics["mse"] + 0.5 * out.metrics["ce"], rel=1e-5)
    assert list(method.frozen_parameters(model, 0)) == []


def test_engine_warmup_leaves_the_decoder_untouched(patterns, tmp_path):
    from semantic_genesis.training.trainer import train
    from semantic_genesis.utils.seeding import derive_seed, seed_everything

    cfg = _cfg(patterns, f"out={tmp_path}", "train.epochs=1", "method.options.cls_warmup_epochs=1")
    seed_everything(derive_seed(cfg.seed, "init"))  # the engine's initialisation
    init = {k: v.clone() for k, v in methods.build(cfg).build_model().state_dict().items()}
    result = train(cfg)
    params = dict(result.model.named_parameters())
    decoder = [k for k in params if k.startswith(("up_tr", "out_tr"))]
    assert decoder
    for key in decoder:  # (batch-statistics buffers move with every forward; parameters must not)
        assert torch.equal(params[key].detach(), init[key]), key
    assert all(not torch.equal(params[k].detach(), init[k]) for k in params if k.startswith(("down_tr", "clc_out")))


def test_patience_counts_joint_epochs_only(patterns, tmp_path):
    """Early stopping must not end a run during the classification warm-up, and the best weights must be a
    joint model: the engine resets the best value and the patience counter at the first joint epoch."""
    from semantic_genesis.training.logging import read_metrics
    from semantic_genesis.training.trainer import train

    # a vanishing lr never improves validation: without the reset the run stopped after epoch 1 (warm-up)
    cfg = _cfg(patterns, f"out={tmp_path}", "train.epochs=8", "train.steps_per_epoch=1", "train.patience=1",
               "optim.lr=1e-9", "method.options.cls_warmup_epochs=3")
    result = train(cfg)
    assert result.stop_reason == "early_stop"
    assert result.epoch == 5  # 3 warm-up epochs + the first joint epoch (new best) + 1 epoch of patience
    assert result.best_epoch == 3
    val = read_metrics(tmp_path, "validation")
    assert [v["bad_epochs"] for v in val] == [0, 1, 2, 0, 1]
    assert [(e["event"], e["epoch"]) for e in read_metrics(tmp_path, "event") if e["event"] == "monitor_reset"] == [
        ("monitor_reset", 3)]


def test_short_training_learns_both_tasks(patterns, tmp_path):
    from semantic_genesis.training.logging import read_metrics
    from semantic_genesis.training.trainer import train

    # The elastic warp's alpha=991 / sigma=8 is calibrated for 64x64x32 patterns; on 16^3 patterns it moves
    # voxels by a sixth of the pattern, which drowns the class signal in a run this short.
    cfg = _cfg(patterns, f"out={tmp_path}", "train.epochs=20", "method.options.cls_warmup_epochs=4",
               "transforms.overrides.elastic=false")
    train(cfg)
    val = read_metrics(tmp_path, "validation")
    assert len(val) == 20
    assert val[-1]["accuracy"] >= 2.5 / C, [v["accuracy"] for v in val]  # chance is 1/C
    assert val[-1]["mse"] < 0.9 * val[0]["mse"], [v["mse"] for v in val]  # restoration loss falls


def test_weights_load_into_fine_tuning_models(patterns, tmp_path):
    from semantic_genesis.models import create, load_pretrained, load_weights
    from semantic_genesis.training.trainer import train

    cfg = _cfg(patterns, f"out={tmp_path}", "train.epochs=1", "train.steps_per_epoch=1", "method.options.cls_warmup_epochs=0")
    result = train(cfg)
    _, meta = load_weights(result.best_weights)
    assert meta["method"] == "semantic_genesis" and meta["num_classes"] == C
    assert meta["input_size"] == [16, 16, 16] and meta["lambda_cls"] == 0.01
    # the discovery cohort's training and validation patients, hashed (pretraining / test leakage check)
    import json

    from semantic_genesis.provenance import patient_hash

    by_split = json.loads((patterns / "manifest.json").read_text())["attrs"]["split_patients"]
    (source,) = meta["patients"]["sources"]
    assert source["method"] == "semantic_genesis" and source["splits"] == {
        name: sorted(patient_hash(p) for p in by_split[name]) for name in ("train", "validation")}
    seg = create("unet3d", width=0.125)
    report = load_pretrained(seg, result.best_weights, strict=False)
    expected = {k for k in seg.state_dict()}
    assert expected <= set(report.loaded)  # the whole encoder + decoder
    assert all(k.startswith("clc_out") for k in report.unexpected)
    torch.testing.assert_close(seg.state_dict()["up_tr64.ops.1.conv1.weight"],
                               result.model.state_dict()["up_tr64.ops.1.conv1.weight"])


def test_ablations(patterns):
    cls_method = methods.build(_cfg(patterns, "method.name=self_classification"))
    model = cls_method.build_model()
    assert type(model).__name__ == "EncoderClassifier" and type(model.backbone).__name__ == "UNet3D"
    out = cls_method.training_step(model, _batch(cls_method), _ctx(epoch=0))
    assert set(out.metrics) == {"ce", "accuracy"} and out.loss.item() == pytest.approx(out.metrics["ce"])
    rec_method = methods.build(_cfg(patterns, "method.name=self_restoration_patterns"))
    model = rec_method.build_model()
    assert type(model).__name__ == "UNet3D"
    out = rec_method.training_step(model, _batch(rec_method), _ctx(epoch=0))
    assert set(out.metrics) == {"mse"} and out.loss.item() == pytest.approx(out.metrics["mse"])


def test_a_variant_is_a_restoration_preset(patterns):
    class SemanticInpainting(SemanticAddon):
        name = "semantic_inpainting_test"
        restoration_preset = "inpaint"

    method = SemanticInpainting(_cfg(patterns))
    assert method.preset_name == "inpaint"
    x = _batch(method)["image"]
    inp, target = method.make_pair(x, torch.Generator().manual_seed(0))
    assert torch.equal(target, x) and not torch.equal(inp, x)
    assert SemanticInpainting(_cfg(patterns, "method.options.preset=outpaint")).preset_name == "outpaint"


def test_pattern_set_with_missing_shards(patterns, tmp_path):
    broken = tmp_path / "patterns"
    shutil.copytree(patterns, broken)
    (broken / "shard_00002.npy").unlink()
    method = methods.build(_cfg(broken))
    with pytest.raises(DataError, match=r"shard_00002.npy: shard listed in the manifest is missing"):
        method.build_datasets()
    with pytest.raises(DataError, match=r"nowhere/manifest.json: no manifest"):
        methods.build(_cfg(tmp_path / "nowhere")).build_datasets()


def test_a_transforms_preset_the_method_would_ignore_is_refused():
    """The Semantic Genesis family takes its recipe from method.options.preset, not transforms.preset."""
    from semantic_genesis.errors import ConfigError

    sg = methods.get("semantic_genesis")
    sg(load_config(None, ["method.name=semantic_genesis"]))  # transforms.preset left at its default
    sg(load_config(None, ["method.name=semantic_genesis", "transforms.preset=semantic_genesis"]))
    with pytest.raises(ConfigError, match=r"transforms.preset='inpaint' would be ignored: set method.options.preset=inpaint"):
        sg(load_config(None, ["method.name=semantic_genesis", "transforms.preset=inpaint"]))
    sg(load_config(None, ["method.name=semantic_genesis", "transforms.preset=inpaint", "method.options={preset: inpaint}"]))
    with pytest.raises(ConfigError, match="would be ignored"):
        methods.get("self_classification")(load_config(None, ["method.name=self_classification", "transforms.preset=nonlinear"]))
    # restoration-method variants use their method's recipe (configured by transforms.overrides)
    methods.get("semantic_inpainting")(load_config(None, ["method.name=semantic_inpainting", "transforms.preset=semantic_genesis"]))


def test_self_classification_presets_train_the_classifier_only():
    for name in ("self_classification_3d", "self_classification_3d_tiny"):
        cfg = load_config(name)
        method = methods.get(cfg.method.name)(cfg)
        assert cfg.method.name == "self_classification" and not method.restore and method.classify
        assert method.warmup == 0
