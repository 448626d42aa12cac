"""Pretraining / test leakage on a LUNA16-layout phantom: pretraining records its (hashed) patients in
the weights; fine-tuning refuses an initialisation pretrained on NCC test patients (random cube split),
accepts the official subset split, and records an explicit override."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semantic_genesis.config import load_config
from semantic_genesis.errors import DataError
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.data import split_by_patient
from semantic_genesis.finetune.leakage import check_pretraining_overlap, split_test_patients
from semantic_genesis.finetune.models import InitSpec
from semantic_genesis.models.weights import read_metadata, save_weights
from semantic_genesis.provenance import patient_hash

CUBES = ["cubes.cube_size=[16,16,8]", "cubes.cubes_per_scan=4", "cubes.dtype=float16", "cubes.content_test=body",
         "cubes.body_min_fraction=0.5", "cubes.border_fraction=[0,0,0]"]
TASK = ["finetune.crop_size=[16,16,8]", "finetune.max_negatives=2", "finetune.split=auto", "model.width=0.125",
        "train.batch_size=4", "train.epochs=1", "train.device=cpu", "optim.scheduler=none", "train.progress=false"]


@pytest.fixture(scope="module")
def luna16(tmp_path_factory) -> Path:
    """20 small LUNA16-layout phantoms (patient i in subset i % 10: NCC tests on subsets 7-9)."""
    from semantic_genesis.phantoms.export import export_ct_cohort

    root = tmp_path_factory.mktemp("leak") / "luna16"
    export_ct_cohort(root, 20, seed=0, layout="luna16", shape=(32, 32, 24))
    return root


def _pretrain(luna16: Path, out: Path, split: str) -> Path:
    """Cut a cube set with ``cubes.split=split`` and pretrain Models Genesis on it for one step."""
    from semantic_genesis.cubes import generate_cubes
    from semantic_genesis.training.trainer import train

    generate_cubes(load_config(None, [*CUBES, f"cubes.split={split}"]), luna16, out / "cubes", progress=False)
    cfg = load_config("models_genesis_3d_tiny", [
        f"data={out / 'cubes'}", f"out={out / 'run'}", "train.device=cpu", "train.epochs=1", "train.steps_per_epoch=1",
        "train.batch_size=4", "train.num_workers=0", "train.progress=false"])
    return train(cfg).final_weights


@pytest.fixture(scope="module")
def weights(luna16, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pretrained")
    return {split: _pretrain(luna16, root / split, split) for split in ("random", "auto")}


@pytest.fixture(scope="module")
def ncc(luna16):
    cfg = load_config(None, TASK)
    data = tasks.get("ncc").load(luna16, cfg)
    split = split_by_patient(data, cfg.finetune.split, cfg.seed)
    return cfg, data, split


def test_pretraining_records_its_hashed_patients(weights, luna16, capsys):
    manifest = json.loads((weights["auto"].parents[2] / "cubes" / "manifest.json").read_text())
    by_split = manifest["attrs"]["split_patients"]
    record = read_metadata(weights["auto"])["patients"]
    assert record["hash"] == "sha256:16" and len(record["sources"]) == 1
    source = record["sources"][0]
    assert source["method"] == "models_genesis" and "LUNA16 subsets 0-4 train" in source["split_rule"]
    assert source["splits"] == {name: sorted(patient_hash(p) for p in by_split[name]) for name in ("train", "validation")}
    assert source["count"] == len(by_split["train"]) + len(by_split["validation"]) == 14  # subsets 0-6
    text = weights["auto"].read_bytes()[:200_000]
    assert not any(p.encode() in text for p in by_split["train"])  # the ids themselves are not in the file
    from semantic_genesis.cli import main

    assert main(["weights", "inspect", str(weights["auto"])]) == 0
    assert "patients      models_genesis: train 10, validation 4 (hashed ids)" in capsys.readouterr().out


def test_random_split_pretraining_is_refused_official_split_accepted(weights, ncc, tmp_path):
    from semantic_genesis.finetune.trainer import run_finetune

    cfg, data, split = ncc
    tested = split_test_patients(data, split)
    assert len(tested) == 6
    leaky = InitSpec("mg", weights["random"])
    with pytest.raises(DataError) as info:
        check_pretraining_overlap(leaky, tested, "ncc")
    message = str(info.value)
    assert "\n" not in message and weights["random"].name in message and "finetune.allow_pretraining_overlap" in message
    assert any(p in message for p in tested)
    with pytest.raises(DataError, match="pretrained on"):  # the library entry point refuses before any training
        run_finetune(tasks.get("ncc"), data, split, cfg, leaky, tmp_path / "leaky", seed=0)
    assert not (tmp_path / "leaky" / "checkpoints").exists()

    clean = check_pretraining_overlap(InitSpec("mg", weights["auto"]), tested, "ncc")
    assert clean.status == "clean" and not clean.message


def test_override_is_recorded_and_fine_tuned_weights_keep_the_record(weights, ncc, tmp_path):
    from semantic_genesis.finetune.protocol import run_protocol
    from semantic_genesis.finetune.trainer import run_finetune

    cfg, data, split = ncc
    allowed = load_config(None, [*TASK, "finetune.allow_pretraining_overlap=true", "finetune.task=ncc"])
    lines: list[str] = []
    summary = run_protocol(allowed, None, [InitSpec("mg", weights["random"])], 1, tmp_path / "eval",
                           log=lines.append, data=data)
    check = summary["pretraining_overlap"]["mg"]
    assert check["status"] == "allowed" and check["patients"] and set(check["patients"]) <= set(split_test_patients(data, split))
    assert any("allowed by finetune.allow_pretraining_overlap=true" in line for line in lines)
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["pretraining_overlap"]["mg"]["status"] == "allowed"
    assert "**Leakage**: mg was pretrained on" in (tmp_path / "eval" / "results.md").read_text()

    result = run_finetune(tasks.get("ncc"), data, split, allowed, InitSpec("mg", weights["auto"]), tmp_path / "ft", seed=0)
    assert result.pretraining_overlap["status"] == "clean"
    sources = read_metadata(tmp_path / "ft" / "weights" / "best.safetensors")["patients"]["sources"]
    assert [s["method"] for s in sources] == ["models_genesis", "finetune"]  # exposure carried along
    train_patients = {data.patients[i] for i in split["train"]}
    assert sources[1]["splits"]["train"] == sorted(patient_hash(p) for p in train_patients)


def test_weights_without_a_record_get_a_warning(ncc, tmp_path):
    from semantic_genesis.models.unet3d import UNet3D

    _, data, split = ncc
    path = save_weights(UNet3D(width=0.125), tmp_path / "imported.safetensors", {"method": "models_genesis"})
    check = check_pretraining_overlap(InitSpec("official", path), split_test_patients(data, split), "ncc")
    assert check.status == "unchecked"
    assert "imported.safetensors" in check.message and "cannot be checked" in check.message
    assert check_pretraining_overlap(InitSpec("scratch"), ["a"], "ncc").status == "scratch"


def test_task_data_without_patient_ids_cannot_be_checked(weights, tmp_path):
    """The official NCS arrays are crops of LIDC-IDRI scans (LUNA16 is a subset) without patient ids."""
    from semantic_genesis.finetune.data import TaskSamples

    from .conftest import blob_task

    data = blob_task("segmentation", n=12)
    data.info["anonymous"] = True
    split = split_by_patient(data, seed=0)
    assert split_test_patients(data, split) is None
    check = check_pretraining_overlap(InitSpec("mg", weights["random"]), None, "ncs")
    assert check.status == "unchecked" and "name crops, not patients" in check.message
    assert TaskSamples(data, split["train"]).patients_seen() is None  # fine-tuned weights get no record


def test_cli_refuses_before_writing_anything_and_the_override_is_accepted(weights, luna16, tmp_path, capsys):
    from semantic_genesis.cli import main

    out = tmp_path / "run"
    argv = ["finetune", "--task", "ncc", "--init", f"mg={weights['random']}", "--data", str(luna16), "--out", str(out),
            "-q", *TASK]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "test patients" in err[0] and not out.exists()
    assert main([*argv, "--dry-run", "finetune.allow_pretraining_overlap=true"]) == 0
    assert "allowed by finetune.allow_pretraining_overlap=true" in capsys.readouterr().err


def test_evaluate_refuses_before_writing_anything(weights, luna16, tmp_path, capsys):
    from semantic_genesis.cli import main

    out = tmp_path / "eval"
    argv = ["evaluate", "--task", "ncc", "--inits", f"scratch,mg={weights['random']}", "--trials", "1",
            "--data", str(luna16), "--out", str(out), "-q", *TASK]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "init mg was pretrained on" in err[0] and not out.exists()
    assert main([*argv[:4], f"scratch,mg={weights['auto']}", *argv[5:], "--dry-run"]) == 0


def test_a_store_tells_its_patients_from_the_manifest_and_its_records(tmp_path):
    import numpy as np

    from semantic_genesis.io.shard_dataset import StoreDataset
    from semantic_genesis.io.shards import ShardWriter

    def store(name, records, **attrs):
        writer = ShardWriter(tmp_path / name, "patterns", (1, 8, 8, 8))
        writer.add_unit("u", np.zeros((len(records), 1, 8, 8, 8), np.float32), records, split="train")
        writer.finish(**attrs)
        return StoreDataset(tmp_path / name, "train")

    assert store("anonymous", [{}, {}]).patients_seen() is None  # no patient anywhere: cannot be checked
    assert store("records", [{"patient": "b"}, {"patient": "a"}]).patients_seen().patients == ["a", "b"]
    # a pattern set crops only some patients of its cohort; the cohort (split_patients) counts
    both = store("cohort", [{"patient": "a"}], split_patients={"train": ["a", "c"], "validation": ["v"]}, split_rule="r")
    assert both.patients_seen().patients == ["a", "c"] and both.patients_seen().split_rule == "r"
