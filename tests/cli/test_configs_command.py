"""``semantic-genesis configs``: the shipped presets, listed and resolved, and ``--config NAME``."""

from __future__ import annotations

import yaml

from semantic_genesis.config import available_presets, load_config, preset_description, presets_dir


def test_configs_lists_every_preset_with_its_description(cli):
    status, printed, _ = cli("configs")
    assert status == 0
    lines = printed.splitlines()
    for name in available_presets():
        line = next(line for line in lines if line.split()[:1] == [name])
        assert line.endswith(preset_description(name))
    assert f"{len(available_presets())} presets in {presets_dir()}" in printed


def test_configs_show_prints_the_preset_resolved(cli):
    status, printed, _ = cli("configs", "show", "semantic_inpainting_3d_tiny")
    assert status == 0
    shown = yaml.safe_load(printed)
    assert shown["method"]["name"] == "semantic_inpainting"  # the variant's own key
    base = load_config("semantic_genesis_3d_tiny")
    assert tuple(shown["discovery"]["pattern_size"]) == base.discovery.pattern_size  # merged from its base
    assert "base" not in shown and set(shown) >= {"seed", "optim", "train", "finetune"}  # defaults filled
    status, printed, _ = cli("configs", "show", "finetune_tiny.yaml", "train.epochs=5")
    assert status == 0 and yaml.safe_load(printed)["train"]["epochs"] == 5
    status, printed, _ = cli("configs", "show", "finetune_tiny", "--path")
    assert status == 0 and printed.strip() == str((presets_dir() / "finetune_tiny.yaml").resolve())


def test_configs_show_unknown_name_suggests(cli):
    status, _, err = cli("configs", "show", "finetune_tinny")
    assert status == 2 and "did you mean finetune_tiny" in err


def test_print_config_of_a_command_uses_the_preset(cli, tmp_path):
    status, printed, _ = cli("cubes", "--config", "models_genesis_3d_tiny", "--print-config")
    assert status == 0 and yaml.safe_load(printed)["cubes"]["cube_size"] == [32, 32, 16]
    assert not list(tmp_path.iterdir())
