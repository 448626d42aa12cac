"""Every plain-PyTorch example in ``examples/`` runs as a user would run it (a subprocess) and learns.

The scripts are found by glob, so a new ``pretrain_*.py`` or ``finetune_*.py`` is tested without
editing this file; ``demo.py`` (the whole CLI pipeline, minutes) is run by ``make demo`` instead.
Each run uses tiny sizes and one thread; the checks are what the scripts print:

* pretraining: the loss on a fixed batch (held-out patient, or fixed transformed patterns) falls
  between the start and the end of training (PEAC: its restoration and order terms; its consistency
  terms first grow while the EMA teacher lags), and ``--out`` writes weights whose backbone a target
  task can be built on;
* fine-tuning: started from a pretrained weights file (``--init``) the encoder tensors are loaded,
  the training loss falls (the last three logged steps against the first three) and the test metric
  is printed in [0, 1].
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PRETRAIN = sorted(p.name for p in EXAMPLES.glob("pretrain_*.py"))
FINETUNE = sorted(p.name for p in EXAMPLES.glob("finetune_*.py"))
# Tiny sizes for the scripts' common options; options a script does not have are left out.
TINY = {"--steps": "8", "--batch-size": "4", "--patients": "1", "--train-patients": "3", "--test-patients": "2",
        "--neighbours": "3", "--classes": "3", "--ae-steps": "5", "--cls-warmup": "3", "--radiographs": "4",
        "--images-per-dataset": "12"}
PATTERN_SCRIPTS = {"--patients": "4"}  # self-discovery needs patients to choose neighbours from
FLOAT = r"([0-9]+\.[0-9]+)"
# The backbone (name, width) each pretraining script saves; the 3D methods share the Models Genesis U-Net.
BACKBONES = {"pretrain_ark.py": ("resunet2d", 0.25)}


def run(script: str, *extra: str) -> str:
    """Run ``examples/script`` with its tiny options and ``extra``; return its output (fails on exit != 0)."""
    source = (EXAMPLES / script).read_text(encoding="utf-8")
    sizes = dict(TINY, **(PATTERN_SCRIPTS if "discover_patterns" in source else {}))
    argv = [a for option, value in sizes.items() if f'"{option}"' in source for a in (option, value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *argv, "--device", "cpu", *extra],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def step_losses(output: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^step +\d+/\d+ +loss {FLOAT}", output, flags=re.M)]


def test_every_example_is_covered():
    assert {"pretrain_models_genesis.py", "pretrain_semantic_genesis.py", "pretrain_autoencoder.py",
            "pretrain_inpainting.py", "pretrain_patch_shuffling.py", "pretrain_rubiks_cube.py",
            "pretrain_self_classification.py", "pretrain_peac.py",
            "pretrain_ark.py"} <= set(PRETRAIN)
    assert {"finetune_ncc.py", "finetune_ncs.py", "finetune_lcs.py", "finetune_bms.py"} <= set(FINETUNE)
    others = {p.name for p in EXAMPLES.glob("*.py")} - set(PRETRAIN) - set(FINETUNE)
    assert others == {"demo.py"}, f"examples not run by the tests: {sorted(others - {'demo.py'})}"


@pytest.mark.parametrize("script", PRETRAIN)
def test_pretraining_example_learns_and_saves_transferable_weights(script, tmp_path):
    from semantic_genesis.models.loading import read_pretrained

    out = run(script, "--out", str(tmp_path / "w.safetensors"))
    assert len(step_losses(out)) == 8
    before, after = (float(v) for v in re.search(rf"(?:held-out|fixed-batch) loss {FLOAT} -> {FLOAT}", out).groups())
    if script == "pretrain_peac.py":  # PEAC pretrains a Swin for the 2D radiograph tasks
        from semantic_genesis.models.loading import build_model_from_weights

        # in 8 steps the consistency terms grow (the EMA teacher barely moves) while POPAR learns
        rest = re.search(rf"held-out restoration {FLOAT} -> {FLOAT}, order {FLOAT} -> {FLOAT}", out)
        r0, r1, o0, o1 = (float(v) for v in rest.groups())
        assert r1 < 0.5 * r0 and o1 < o0, out

        swin = build_model_from_weights(tmp_path / "w.safetensors")
        assert swin.ARCH_NAME == "swin2d" and swin.arch_args["size"] == "tiny" and swin.feature_strides[-1] == 8
        return
    assert after < before, out
    pretrained = read_pretrained(tmp_path / "w.safetensors")
    backbone, width = BACKBONES.get(script, ("unet3d", 0.125))
    assert pretrained.backbone == backbone and pretrained.backbone_args["width"] == width


@pytest.fixture(scope="module")
def pretrained_unet(tmp_path_factory):
    """A U-Net weights file as the pretraining examples write it (Models Genesis layout, width 0.125)."""
    import torch

    from semantic_genesis.models import create, save_weights

    torch.manual_seed(0)
    return save_weights(create("unet3d", width=0.125), tmp_path_factory.mktemp("w") / "mg.safetensors",
                        metadata={"method": "models_genesis"})


@pytest.mark.parametrize("script", FINETUNE)
def test_finetuning_example_loads_the_encoder_learns_and_scores(script, pretrained_unet):
    out = run(script, "--init", str(pretrained_unet))
    loaded = int(re.search(r"init mg: (\d+) tensors loaded", out).group(1))
    assert loaded >= 40, out  # the encoder's 4 blocks at least (segmentation: the decoder too)
    losses = step_losses(out)
    assert len(losses) == 8 and sum(losses[-3:]) < sum(losses[:3]), out
    metric, value = re.search(rf"^test (auc|iou) {FLOAT}", out, flags=re.M).groups()
    assert 0.0 <= float(value) <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["models_genesis", "inpainting", "patch_shuffling"])
def test_semantic_addon_recipes_learn(recipe):
    out = run("pretrain_semantic_genesis.py", "--recipe", recipe, "--steps", "16")
    before, after = (float(v) for v in re.search(rf"fixed-batch loss {FLOAT} -> {FLOAT}", out).groups())
    assert after < before, out
