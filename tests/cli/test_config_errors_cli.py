"""Bad configs and settings through the CLI: one-line errors, and nothing written before they are found."""

from __future__ import annotations

import pytest


def test_non_utf8_config_is_one_line(tmp_path, cli):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("# r\xe9sum\xe9\nseed: 1\n".encode("latin-1"))
    status, _, err = cli("pretrain", "--config", config, "--out", tmp_path / "run")
    assert status == 2 and err == f"error: {config}: not UTF-8 text (byte 0xe9 on line 1); save the config as UTF-8\n"


def test_duplicate_yaml_keys_name_the_key_and_line(tmp_path, cli):
    config = tmp_path / "dup.yaml"
    config.write_text("optim:\n  lr: 0.1\ntrain:\n  epochs: 3\n  epochs: 4\n")
    status, _, err = cli("pretrain", "--config", config, "--print-config")
    assert status == 2 and "dup.yaml: line 5: duplicate key 'epochs' (first given on line 4)" in err


def test_scalar_section_with_an_override_is_an_error(tmp_path, cli):
    config = tmp_path / "scalar.yaml"
    config.write_text("optim: 5\n")
    status, _, err = cli("pretrain", "--config", config, "optim.lr=0.1", "--print-config")
    assert status == 2 and "scalar.yaml: optim: expected a mapping of OptimConfig fields, got 5" in err


@pytest.mark.parametrize("lr", ["1e38", "1e39", ".inf", ".nan", "0", "-1"])
def test_unusable_learning_rates_fail_before_the_run_folder_exists(cube_set, tmp_path, cli, lr):
    run = tmp_path / "run"
    status, _, err = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set, "--out", run,
                         f"optim.lr={lr}")
    assert status == 2 and err.startswith("error: command line: optim.lr: ")
    assert not run.exists()


def test_out_naming_an_existing_file_is_an_error(cube_set, ct_cohort, tmp_path, cli):
    existing = tmp_path / "results.txt"
    existing.write_text("keep me\n")
    for argv in (
        ("pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set, f"out={existing}"),
        ("cubes", "--config", "models_genesis_3d_tiny", "--data", ct_cohort, "--out", existing),
        ("discover", "--config", "semantic_genesis_3d_tiny", "--data", ct_cohort, "--out", existing),
        ("phantom", "ct", "--out", existing),
    ):
        status, _, err = cli(*argv)
        assert status == 2 and "is a file, not a folder" in err, (argv, err)
    status, _, err = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set, "--out", existing / "run")
    assert status == 2 and "is a file, so the folder cannot be created" in err
    assert existing.read_text() == "keep me\n"


@pytest.mark.parametrize("override, message", [
    ("transforms.preset=foo", "unknown transform preset 'foo'"),
    ("transforms.overrides.nope=1", "transform preset 'models_genesis': unknown option 'nope'"),
    ("method.name=nope", "unknown method 'nope'"),
    ("model.name=nope", "unknown model 'nope'"),
])
def test_pretrain_validates_names_before_writing(cube_set, tmp_path, cli, override, message):
    run = tmp_path / "run"
    status, _, err = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set, "--out", run, override)
    assert status == 2 and message in err
    assert not run.exists()


def test_pretrain_checks_its_data_before_writing(ct_cohort, tmp_path, cli):
    run = tmp_path / "run"
    status, _, err = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", tmp_path / "nowhere", "--out", run)
    assert status == 2 and "nowhere: no such folder" in err
    status, _, err = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", ct_cohort, "--out", run)
    assert status == 2 and "no manifest" in err  # a scans folder is not a cube set
    assert not run.exists()


def test_cubes_and_discover_validate_before_writing(ct_cohort, tmp_path, cli):
    out = tmp_path / "out"
    status, _, err = cli("cubes", "--data", ct_cohort, "--out", out, "cubes.cubes_per_scan=0")
    assert status == 2 and "cubes.cubes_per_scan must be > 0" in err
    status, _, err = cli("discover", "--config", "semantic_genesis_3d_tiny", "--data", ct_cohort, "--out", out,
                         "discovery.num_neighbours=50")
    assert status == 2 and "discovery.num_neighbours K=50 is larger than the" in err
    status, _, err = cli("discover", "--config", "semantic_genesis_3d_tiny", "--data", ct_cohort, "--out", out,
                         "discovery.num_resolutions=0")
    assert status == 2 and "discovery.num_resolutions must be >= 1" in err
    status, _, err = cli("cubes", "--data", ct_cohort)
    assert status == 2 and err == "error: no cube-set folder: pass --out DIR or out=DIR\n"
    assert not out.exists()


def test_finetune_and_evaluate_validate_before_writing(tmp_path, cli):
    out = tmp_path / "out"
    status, _, err = cli("finetune", "--task", "nope", "--data", tmp_path, "--out", out)
    assert status == 2 and "unknown target task 'nope' (finetune.task); available:" in err
    status, _, err = cli("evaluate", "--task", "ncc", "--data", tmp_path, "--out", out,
                         "--inits", f"scratch,mg={tmp_path / 'mg.safetensors'}")
    assert status == 2 and "mg.safetensors: weights file of initialisation 'mg' not found" in err
    status, _, err = cli("evaluate", "--task", "ncc", "--data", tmp_path, "--out", out, "--trials", "0")
    assert status == 2 and "finetune.trials must be >= 1" in err
    status, _, err = cli("finetune", "--task", "ncc", "--data", tmp_path, "--out", out, "finetune.crop_size=[10,16,8]")
    assert status == 2 and "finetune.crop_size" in err
    assert not out.exists()


def test_weights_import_and_export_below_a_file_are_one_line_errors(tmp_path, cli):
    """Into a folder they write inside it (tests/models/test_loading.py); below a file nothing is written."""
    import torch

    from semantic_genesis.models.unet3d import UNet3D
    from semantic_genesis.models.weights import save_weights

    official = tmp_path / "Genesis_Chest_CT.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in UNet3D(width=0.125).state_dict().items()}}, official)
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    target = blocker / "weights.safetensors"
    status, _, err = cli("weights", "import", "--format", "models_genesis", official, target)
    assert status == 2 and err.startswith(f"error: OUT {target}: {blocker} is a file") and err.count("\n") == 1
    ours = save_weights(UNet3D(width=0.125), tmp_path / "ours.safetensors")
    status, _, err = cli("weights", "export", "--format", "models_genesis", ours, blocker / "mg.pt")
    assert status == 2 and "is a file" in err
    assert blocker.read_text() == "a file, not a folder"
