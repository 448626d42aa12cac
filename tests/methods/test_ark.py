"""Ark / Ark+ (Ma et al., MICCAI 2023): every mechanism shown on tiny networks and three phantom
datasets with different label spaces and types (ChestX-ray14 multi-label, RSNA Pneumonia 3-class,
Shenzhen binary), exported in their public layouts and read by the real readers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from semantic_genesis import methods
from semantic_genesis.config import load_config
from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.methods.ark import head_loss
from semantic_genesis.methods.ark_data import CyclicBatches, ViewSettings, ark_views, multi_crops
from semantic_genesis.methods.ark_eval import results_markdown, score_head
from semantic_genesis.methods.base import StepContext
from semantic_genesis.models.multi_head import MultiHeadModel
from semantic_genesis.training.checkpoint import load_checkpoint
from semantic_genesis.training.data import collate
from semantic_genesis.utils.seeding import derive_seed, seed_everything

SIZE = 32
DATASETS = (
    "[{name: cxr14, layout: chestxray14, root: chestxray14, split: all, val_fraction: 0.25,"
    " labels: [Cardiomegaly, Effusion, Pneumothorax, Edema, Emphysema]},"
    " {name: rsna, layout: rsna_pneumonia, root: rsna_pneumonia, options: {variant: 3class}, val_fraction: 0.25},"
    " {name: shenzhen, layout: shenzhen, root: shenzhen, val_fraction: 0.25}]"
)
BASE = [f"method.options.image_size=[{SIZE},{SIZE}]", f"method.options.datasets={DATASETS}", "train.progress=false",
        "train.tensorboard=false", "train.log_every=1", "train.num_workers=0", "train.epochs=2"]
HEADS = [5, 3, 1]


@pytest.fixture(scope="module")
def ark_data(tmp_path_factory) -> Path:
    from semantic_genesis.phantoms.export import export_xray_cohort

    root = tmp_path_factory.mktemp("ark_data")
    for layout, seed, rate in (("chestxray14", 1, 0.4), ("rsna_pneumonia", 2, 0.1), ("shenzhen", 3, 0.4)):
        export_xray_cohort(root / layout, 32, seed=seed, layout=layout, shape=(32, 32, 24), size=(SIZE, SIZE),
                           finding_rate=rate)
    return root


def ark_config(root: Path, out: Path, *extra: str):
    return load_config("ark_2d_tiny", [f"data={root}", f"out={out}", *BASE, *extra])


def built(root: Path, out: Path, *extra: str):
    """``(method, student, train set)`` as the engine builds them."""
    cfg = ark_config(root, out, *extra)
    method = methods.build(cfg)
    seed_everything(derive_seed(cfg.seed, "init"))
    model = method.build_model()
    train, _ = method.build_datasets()
    return method, model, train


def batch_of(train, dataset: int, n: int = 4) -> dict[str, torch.Tensor]:
    start = int(train.offsets[dataset])
    return collate([train[k] for k in range(start, start + n)])


def ctx(seed: int = 0, **kw) -> StepContext:
    return StepContext(kw.pop("epoch", 0), kw.pop("step", 0), kw.pop("batch_index", 0), torch.device("cpu"),
                       torch.Generator().manual_seed(seed), **kw)


# -- 9. shapes ------------------------------------------------------------------------------------------
def test_multi_head_shapes_and_embedding():
    torch.manual_seed(0)
    model = MultiHeadModel("swin2d", [3, 2, 1], proj_dim=16, backbone_args={"size": "tiny"})
    x = torch.rand(4, 1, SIZE, SIZE)
    for i, n in enumerate([3, 2, 1]):
        projection, logits = model(x, head=i)
        assert projection.shape == (4, 16) and logits.shape == (4, n)
    assert [tuple(o.shape) for o in model(x)] == [(4, 3), (4, 2), (4, 1)]
    torch.testing.assert_close(model.embed(x), model(x, head=1)[0])
    assert model.arch_args["num_classes"] == [3, 2, 1] and model.arch_args["backbone"] == "swin2d"
    assert all(k.startswith(("swinViT.", "projector.", "omni_heads.")) for k in model.state_dict())
    with pytest.raises(DataError, match="head 3 does not exist; the network has 3 heads"):
        model(x, head=3)
    mlp = MultiHeadModel("unet2d", [2], proj_dim=8, use_mlp=True, backbone_args={"width": 0.125})
    assert isinstance(mlp.projector, nn.Sequential) and mlp(torch.rand(2, 1, 32, 32), head=0)[1].shape == (2, 2)
    bare = MultiHeadModel("unet2d", [2], proj_dim=0, backbone_args={"width": 0.125})
    assert bare.embed(torch.rand(2, 1, 32, 32)).shape == (2, bare.bottleneck_channels)


# -- 10. heads get only their own labels --------------------------------------------------------------
@pytest.mark.parametrize("dataset", [0, 1, 2])
def test_a_step_on_dataset_i_trains_head_i_and_the_shared_parts_only(ark_data, tmp_path, dataset):
    method, model, train = built(ark_data, tmp_path)
    assert method.num_classes == HEADS and method.tasks == ["multi-label", "multi-class", "binary"]
    out = method.training_step(model, batch_of(train, dataset), ctx(epoch=1))  # epoch 1: coefficient > 0
    assert out.metrics["coefficient"] > 0
    out.loss.backward()
    for j, head in enumerate(model.omni_heads):
        if j == dataset:
            assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
        else:
            assert head.weight.grad is None
    assert model.projector.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder_parameters())


def test_a_target_of_the_wrong_width_raises():
    with pytest.raises(DataError, match=r"logits \(4, 3\) but the targets are \(4, 2\)"):
        head_loss(torch.zeros(4, 3), torch.zeros(4, 2), "multi-label", "miccai")


def test_criteria_per_task_and_variant():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0]])
    onehot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    torch.testing.assert_close(head_loss(logits, onehot, "multi-class", "miccai"), bce)  # MICCAI: BCE everywhere
    torch.testing.assert_close(head_loss(logits, onehot, "multi-class", "plus"), ce)  # Ark+: CE
    torch.testing.assert_close(head_loss(logits, onehot, "multi-label", "plus"), bce)
    unknown = onehot.clone()
    unknown[1, 2] = float("nan")  # an unknown label is left out of the mean
    kept = torch.ones_like(onehot, dtype=torch.bool)
    kept[1, 2] = False
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[kept], onehot[kept])
    torch.testing.assert_close(head_loss(logits, unknown, "multi-label", "miccai"), expected)


# -- 11. cyclic order and EMA calls -------------------------------------------------------------------
def test_cyclic_batches_serve_datasets_in_turn_each_item_once_and_resume():
    sampler = CyclicBatches([10, 0, 7, 5], [0, 10, 10, 17], batch_size=4, seed=3)
    assert sampler.batches_per_dataset == [3, 0, 2, 1]  # 7 = 4 + 3; 5 = 4 + 1 -> one batch of 5
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        sampler.set_start(0)
        batches = list(sampler)
        which = [{0 if k < 10 else 2 if k < 17 else 3 for k in b} for b in batches]
        assert all(len(w) == 1 for w in which)  # one dataset per batch
        assert [w.pop() for w in which] == [0, 0, 0, 2, 2, 3]  # config order, each loader once
        assert sorted(k for b in batches for k in b) == list(range(22))  # every item once per epoch
        assert [sampler.dataset_of(i) for i in range(6)] == [0, 0, 0, 2, 2, 3]
        sampler.set_start(4)
        assert list(sampler) == batches[4:]  # resumable mid-epoch
    sampler.set_epoch(0)
    sampler.set_start(0)
    assert list(sampler) != batches  # a new order every epoch
    assert sampler.pass_ends() == [2, -1, 4, 5]
    ranks = [CyclicBatches([10, 7], [0, 10], 2, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert ranks[0].num_batches == ranks[1].num_batches == 3  # 5 + 3 items each: batches of 2 + 3 and of 3
    items = [set(k for b in r.epoch_batches(0) for k in b) for r in ranks]
    assert not items[0] & items[1]


@pytest.mark.parametrize("mode", ["epoch", "iteration"])
def test_the_engine_trains_dataset_by_dataset_and_moves_the_teacher_as_documented(ark_data, tmp_path, monkeypatch, mode):
    import semantic_genesis.models.ema as ema
    from semantic_genesis.training.trainer import train

    cfg = ark_config(ark_data, tmp_path / "run", f"method.options.ema_mode={mode}", "method.options.eval_teacher=false")
    method = methods.build(cfg)
    seen: list[tuple[int, int, list[int]]] = []
    step = method.training_step

    def spy(model, batch, context):
        seen.append((context.epoch, int(batch["dataset"][0]), batch["index"].tolist()))
        assert len(set(batch["dataset"].tolist())) == 1
        return step(model, batch, context)

    calls: list[float] = []
    real = ema.ema_update
    monkeypatch.setattr(ema, "ema_update", lambda s, t, m: (calls.append(m), real(s, t, m)))
    monkeypatch.setattr(method, "training_step", spy)
    train(cfg, method)
    lengths = method.sampler.lengths
    for epoch in (0, 1):
        order = [d for e, d, _ in seen if e == epoch]
        assert order == sorted(order) and sorted(set(order)) == [0, 1, 2]
        for d in range(3):
            items = sorted(k for e, dd, idx in seen if e == epoch and dd == d for k in idx)
            start = int(method.sampler.offsets[d])
            assert items == list(range(start, start + lengths[d]))
    if mode == "epoch":
        assert len(calls) == 2 * 3  # once per dataset pass
        momentum, _ = method.schedules()
        np.testing.assert_allclose(calls, momentum.numpy())
    else:
        assert len(calls) == len(seen)  # once per step
        assert calls == sorted(calls) and calls[0] == pytest.approx(0.9)
    assert method.ema_updates == len(calls)


# -- 12. schedules ------------------------------------------------------------------------------------------
def test_schedules_end_points(tmp_path):
    cfg = load_config("ark_2d_tiny", [*BASE, "train.epochs=200"])
    momentum, coefficient = methods.build(cfg).schedules()
    assert len(momentum) == len(coefficient) == 200 * 3  # one value per dataset pass
    assert momentum[0] == pytest.approx(0.9) and 0.99999 < momentum[-1] < 1.0
    assert bool((momentum.diff() >= 0).all()) and bool((coefficient.diff() >= 0).all())
    assert coefficient[0] == 0.0 and coefficient[-1] == pytest.approx(0.5, abs=1e-5)
    plus = load_config("ark_2d_tiny", [*BASE, "train.epochs=200", "method.options.variant=plus"])
    m_plus, c_plus = methods.build(plus).schedules()
    torch.testing.assert_close(c_plus, (m_plus - 0.9) * 5)  # Ark+: c = (m - 0.9) * 5
    assert c_plus[-1] == pytest.approx(0.5, abs=1e-5)
    iteration = methods.build(load_config("ark_2d_tiny", [*BASE, "method.options.ema_mode=iteration"]))
    assert len(iteration.schedules(steps_per_epoch=7)[0]) == 2 * 7  # one value per step
    off = methods.build(load_config("ark_2d_tiny", [*BASE, "method.options.coefficient=0"]))
    assert float(off.schedules()[1].abs().max()) == 0.0


# -- 13. consistency ----------------------------------------------------------------------------------------
def test_with_coefficient_zero_the_update_equals_the_supervised_only_update(ark_data, tmp_path):
    from semantic_genesis.methods.ark_data import ark_views

    method, model, train = built(ark_data, tmp_path)
    batch = batch_of(train, 0)
    results = []
    for recipe in ("ark_c0", "supervised", "ark_c05"):
        net = copy.deepcopy(model)
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        if recipe == "supervised":
            student, _ = ark_views(batch["image"], method.views, torch.Generator().manual_seed(5))
            _, logits = net(method.inputs(student), head=0)
            loss = head_loss(logits, batch["target"][:, :5], "multi-label", "miccai")
        else:
            c = 0.0 if recipe == "ark_c0" else 0.5
            loss = method.supervised_and_consistency(net, batch, ctx(5), c)[0]
        loss.backward()
        opt.step()
        results.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)
    assert not torch.equal(results[0], results[2])


def test_the_consistency_term_uses_projector_outputs_and_the_teacher_gets_no_gradient(ark_data, tmp_path):
    method, model, train = built(ark_data, tmp_path)
    teacher = method.teacher
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    loss, supervised, consistency = method.supervised_and_consistency(model, batch_of(train, 1), ctx(1), 1.0)
    assert consistency > 0 and torch.equal(loss, consistency)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(h.weight.grad is None or not h.weight.grad.any() for h in model.omni_heads)  # logits not compared
    assert model.projector.weight.grad.abs().sum() > 0
    # the teacher is a separately initialised twin (official), not a copy
    assert not torch.equal(teacher.projector.weight, model.projector.weight)


# -- 14. views ---------------------------------------------------------------------------------------------
def test_views_share_geometry_and_only_the_student_is_recoloured():
    cells = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) / 16
    images = cells.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3).repeat(6, 1, 1, 1)  # (6, 1, 32, 32)
    plain = ViewSettings(photometric_p=0.0)
    coloured = ViewSettings(photometric_p=1.0)
    s0, t0 = ark_views(images, plain, torch.Generator().manual_seed(2))
    s1, t1 = ark_views(images, coloured, torch.Generator().manual_seed(2))
    assert torch.equal(t0, t1)  # the teacher view has no photometric change
    assert not torch.allclose(s0, s1)
    assert set(torch.unique(t0).tolist()) <= set(torch.unique(images).tolist()) | {0.0}  # nearest: cell values only
    same = (s0 - t0).abs() < 1e-5
    assert float(same.float().mean()) > 0.6  # same geometry: bilinear and nearest agree inside the cells
    plus_s, plus_t = ark_views(images, ViewSettings(mode="ark_plus"), torch.Generator().manual_seed(2))
    assert torch.equal(plus_t, images) and not torch.equal(plus_s, images)
    with pytest.raises(ConfigError, match="views must be one of ark, ark_plus"):
        ViewSettings(mode="dino")
    crops = multi_crops(images, 10)
    assert crops.shape == (10, 6, 1, 32, 32) and torch.equal(crops[5], torch.flip(crops[0], dims=(-1,)))


# -- 15. evaluation ----------------------------------------------------------------------------------------
def test_a_perfect_scorer_gets_auc_one_and_classes_without_positives_are_skipped():
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    result = score_head("d", "multi-label", ["a", "b", "c"], targets, targets)
    assert result.auc["a"] == result.auc["b"] == 1.0 and result.mean_auc == 1.0
    assert result.skipped == ["c"] and np.isnan(result.auc["c"])
    worst = score_head("d", "multi-label", ["a", "b", "c"], 1 - targets, targets)
    assert worst.mean_auc == 0.0
    five = score_head("chexpert", "multi-label", ["a", "b", "c"], targets, targets, eval_labels=["b"])
    assert list(five.auc) == ["b"]  # e.g. CheXpert scored on its five competition labels
    classes = torch.eye(3)[[0, 1, 2, 1]]
    scores = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.3, 0.4, 0.3]])
    multi = score_head("rsna", "multi-class", ["x", "y", "z"], scores, classes)
    assert multi.accuracy == 0.75 and multi.auc["x"] == 1.0
    unknown = targets.clone()
    unknown[3, 0] = float("nan")  # unknown labels are left out of their class
    assert score_head("d", "multi-label", ["a", "b", "c"], targets, unknown).positives["a"] == 2
    table = results_markdown([result, multi])
    assert "| d | multi-label | 4 | 1.0000 |" in table and "| c | 0 | n/a |" in table and "mean over datasets" in table


def test_validation_reports_every_dataset_for_student_and_teacher(ark_data, tmp_path):
    from semantic_genesis.training.trainer import train

    cfg = ark_config(ark_data, tmp_path / "run", "train.epochs=1", "method.options.eval_crops=10")
    train(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["kind"] == "validation"][-1]
    for who in ("student", "teacher"):
        assert all(f"{who}/auc/{d}" in val for d in ("cxr14", "rsna", "shenzhen"))
        assert f"{who}/accuracy/rsna" in val and 0.0 <= val[f"{who}/auc"] <= 1.0
    assert val["auc"] == val["teacher/auc"]  # the exported network is monitored
    assert val["loss"] > 0


# -- 16. transfer --------------------------------------------------------------------------------------------
def test_the_teacher_transfers_to_dxc_and_only_projector_and_heads_are_unused(ark_data, tmp_path):
    from semantic_genesis.finetune.models import build_model, parse_init
    from semantic_genesis.finetune.tasks import get
    from semantic_genesis.training.checkpoint import write_weights

    method, model, _ = built(ark_data, tmp_path, "model.name=swin2d", "model.args={size: tiny}")
    path = write_weights(method.export_module(model), tmp_path / "ark.safetensors", method.weights_metadata())
    cfg = load_config("finetune_dxc_tiny", [f"finetune.image_size=[{SIZE},{SIZE}]"])
    net, report = build_model(get("dxc"), cfg, 1, parse_init(f"ark={path}"))
    teacher_keys = set(method.teacher.state_dict())
    assert set(report.unused) == {k for k in teacher_keys if k.startswith(("projector.", "omni_heads."))}
    assert set(report.loaded) == {k for k in teacher_keys if k.startswith("swinViT.")}
    for key in report.loaded:
        torch.testing.assert_close(net.state_dict()[key], method.teacher.state_dict()[key])
    assert report.backbone == "swin2d" and net(torch.rand(2, 1, SIZE, SIZE)).shape == (2, 14)


# -- 17. learning, resume, CLI ----------------------------------------------------------------------------
def test_a_short_run_raises_every_datasets_mean_auc_over_the_untrained_model(ark_data, tmp_path):
    from semantic_genesis.methods.ark import evaluate_weights
    from semantic_genesis.training.trainer import train

    extra = ("train.epochs=15", "optim.lr=0.003", "method.options.export=student", "method.options.eval_teacher=false",
             "method.options.crop_scale=[0.85,1.0]")
    method, untrained, _ = built(ark_data, tmp_path / "untrained", *extra)
    before = {r.dataset: r.mean_auc for r in method.evaluate_split(untrained, "training")}
    cfg = ark_config(ark_data, tmp_path / "run", *extra)
    train(cfg)
    after = {r.dataset: r.mean_auc for r in evaluate_weights(cfg, tmp_path / "run" / "weights" / "final.safetensors", "training")}
    assert set(before) == set(after) == {"cxr14", "rsna", "shenzhen"}
    assert all(after[d] > before[d] + 0.03 for d in before), (before, after)


def test_resume_restores_the_teacher_exactly(ark_data, tmp_path):
    from semantic_genesis.training.trainer import train

    same = ("method.options.eval_teacher=false", "optim.scheduler=none")  # the lr must not depend on max_steps
    train(ark_config(ark_data, tmp_path / "straight", *same))
    train(ark_config(ark_data, tmp_path / "resumed", *same, "train.max_steps=7"))  # stops inside a dataset pass
    train(ark_config(ark_data, tmp_path / "resumed", *same))
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["method"]
    assert a["ema_updates"] == b["ema_updates"] == 6
    assert a["teacher"].keys() == b["teacher"].keys()
    for key in a["teacher"]:
        assert torch.equal(a["teacher"][key], b["teacher"][key]), key


def test_config_errors_name_the_key(ark_data, tmp_path):
    with pytest.raises(ConfigError, match="method.options.datasets: Ark needs at least one dataset"):
        methods.build(load_config("ark_2d_tiny", ["method.options.datasets=[]"]))
    with pytest.raises(ConfigError, match="the name 'a' is used twice"):
        methods.build(load_config("ark_2d_tiny", [
            "method.options.datasets=[{name: a, layout: shenzhen, root: x}, {name: a, layout: shenzhen, root: y}]"]))
    with pytest.raises(ConfigError, match="train.steps_per_epoch must be 0"):
        methods.build(load_config("ark_2d_tiny", ["train.steps_per_epoch=5"]))
    with pytest.raises(ConfigError, match="image_size \\[48, 48\\] must be multiples of 32 for model.name=resunet2d"):
        built(ark_data, tmp_path, "method.options.image_size=[48,48]")
    with pytest.raises(DataError, match="dataset cxr14 is multi-label for the chestxray14 reader, the config says binary"):
        built(ark_data, tmp_path, "method.options.datasets=[{name: cxr14, layout: chestxray14, root: chestxray14, "
                                  "split: all, task: binary}]")


def test_the_tiny_preset_runs_end_to_end_through_the_cli(ark_data, tmp_path, capsys):
    from semantic_genesis.cli import main

    out = tmp_path / "run"
    assert main(["pretrain", "--config", "ark_2d_tiny", f"data={ark_data}", f"out={out}", *BASE, "train.epochs=1"]) == 0
    assert (out / "weights" / "final.safetensors").is_file() and (out / "weights" / "best.safetensors").is_file()
    capsys.readouterr()
    scores = tmp_path / "scores"
    assert main(["pretrain", "--config", "ark_2d_tiny", "--score", str(out / "weights" / "final.safetensors"),
                 f"data={ark_data}", f"out={scores}", *BASE]) == 0
    printed = capsys.readouterr().out
    assert "| cxr14 | multi-label |" in printed and "| rsna | multi-class |" in printed and "### shenzhen" in printed
    saved = json.loads((scores / "scores.json").read_text())
    assert [d["dataset"] for d in saved["datasets"]] == ["cxr14", "rsna", "shenzhen"]
