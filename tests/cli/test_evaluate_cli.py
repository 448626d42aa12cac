"""``evaluate`` through the CLI: interim tables are marked partial; a rerun finishes them."""

from __future__ import annotations

import json

import pytest

from semantic_genesis.cli import main

TINY = ["--config", "finetune_tiny", "model.width=0.125", "train.epochs=1", "train.device=cpu",
        "finetune.max_negatives=6"]


@pytest.fixture(scope="module")
def luna16(tmp_path_factory):
    from semantic_genesis.phantoms.export import export_ct_cohort

    root = tmp_path_factory.mktemp("cli_luna16") / "luna16"
    export_ct_cohort(root, 6, seed=0, layout="luna16", shape=(64, 64, 48))
    return root


def test_interrupted_evaluate_leaves_a_partial_table_and_a_rerun_completes_it(luna16, tmp_path, monkeypatch, capsys):
    import semantic_genesis.finetune.trainer as trainer

    real = trainer.run_finetune
    calls = []

    def interrupted_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_finetune", interrupted_second_trial)
    out = tmp_path / "ncc"
    argv = ["evaluate", "--task", "ncc", "--data", str(luna16), "--inits", "scratch", "--trials", "2",
            "--out", str(out), "-q", *TINY]
    assert main(argv) == 130
    md = (out / "results.md").read_text()
    assert md.startswith("# Transfer results: ncc (partial: 1/2 trials done)")
    assert json.loads((out / "results.json").read_text())["complete"] is False
    capsys.readouterr()

    monkeypatch.setattr(trainer, "run_finetune", real)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "partial" not in (out / "results.md").read_text()
    assert "partial" not in printed and "| scratch |" in printed
    assert json.loads((out / "results.json").read_text())["complete"] is True
    assert (out / "results.tex").is_file()


def test_finetune_records_the_architecture_it_built_from_the_weights(luna16, tmp_path, capsys):
    from semantic_genesis.config import load_config
    from semantic_genesis.models.unet3d import UNet3D
    from semantic_genesis.models.weights import save_weights

    weights = save_weights(UNet3D(width=0.25), tmp_path / "mg.safetensors", {"method": "models_genesis"})
    out = tmp_path / "run"
    argv = ["finetune", "--task", "ncc", "--init", f"mg={weights}", "--data", str(luna16), "--out", str(out), "-q",
            *TINY, "model.width=1.0"]
    assert main([*argv, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "the network is built as its weights are (width 0.25" in printed and not out.exists()
    assert main(argv) == 0
    assert load_config(out / "config.yaml").model.width == 0.25  # what was built, not the config's 1.0
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert main(["finetune", "--task", "ncc", "--init", str(bad), "--data", str(luna16), "--out", str(tmp_path / "b"),
                 *TINY]) == 2
    assert not (tmp_path / "b").exists()
