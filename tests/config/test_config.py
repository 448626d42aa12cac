import pytest

from semantic_genesis.config import Config, TrainConfig, from_dict, load_config, replace, save_config
from semantic_genesis.errors import ConfigError


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 7\ntrain:\n  batch_size: 4\noptim:\n  lr: 1e-3\ncubes:\n  cube_size: [32, 32, 16]\n")
    cfg = load_config(path, ["train.epochs=3", "optim.name=sgd", "transforms.overrides.p=0.5", "data=/x"])
    assert cfg.seed == 7 and cfg.train.batch_size == 4 and cfg.train.epochs == 3
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.cubes.cube_size == (32, 32, 16)
    assert cfg.transforms.overrides == {"p": 0.5}
    assert cfg.data == "/x"
    assert cfg.train.log_every == TrainConfig().log_every  # untouched default


def test_saved_config_loads_back_equal(tmp_path):
    cfg = load_config(None, ["train.batch_size=3", "model.width=0.25", "discovery.strategy=per_class"])
    loaded = load_config(save_config(cfg, tmp_path / "run" / "config.yaml"))
    assert loaded == cfg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key train.batchsize; valid keys of train: batch_size, epochs"):
        load_config(None, ["train.batchsize=3"])
    with pytest.raises(ConfigError, match=r"unknown config key nope; valid keys: seed, data"):
        from_dict(Config, {"nope": 1})


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=abc", "train.batch_size: expected an integer, got 'abc'"),
        ("train.compile=3", "train.compile: expected true or false"),
        ("optim.name=rmsprop", "optim.name: 'rmsprop' is not one of 'adam', 'adamw', 'sgd'"),
        ("cubes.cube_size=[64, 64]", r"cubes.cube_size: expected 3 values"),
        ("train=5", "train: expected a mapping"),
        ("nokey", "not of the form key=value"),
    ],
)
def test_wrong_types_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_replace_with_dotted_keys_checks_types():
    cfg = replace(Config(), **{"train.batch_size": 2, "seed": 5})
    assert cfg.train.batch_size == 2 and cfg.seed == 5
    with pytest.raises(ConfigError):
        replace(Config(), **{"train.batch_size": "x"})


def test_bad_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_base_file_is_deep_merged_relative_to_the_file(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "root.yaml").write_text("seed: 1\ntrain:\n  batch_size: 4\n  epochs: 9\ncubes:\n  cube_size: [32, 32, 16]\n")
    (tmp_path / "presets" / "mid.yaml").write_text("base: root.yaml\ntrain:\n  epochs: 3\n")
    (tmp_path / "leaf.yaml").write_text("base: presets/mid.yaml\ncubes:\n  cube_size: [16, 16, 8]\n")
    cfg = load_config(tmp_path / "leaf.yaml", ["train.batch_size=2"])
    assert cfg.seed == 1 and cfg.train.epochs == 3 and cfg.train.batch_size == 2
    assert cfg.cubes.cube_size == (16, 16, 8)  # lists are replaced, not merged


def test_base_errors_name_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="form a cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"c.yaml: base config .*nowhere.yaml not found"):
        load_config(tmp_path / "c.yaml")


def test_shipped_variant_presets_follow_their_base():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[2] / "configs"
    for suffix in ("_3d.yaml", "_3d_tiny.yaml"):
        sg = load_config(configs / f"semantic_genesis{suffix}")
        for variant in ("semantic_inpainting", "semantic_patch_shuffling", "semantic_models_genesis", "self_classification"):
            cfg = load_config(configs / f"{variant}{suffix}")
            assert cfg.method.name == variant
            assert (cfg.discovery, cfg.model, cfg.optim, cfg.train) == (sg.discovery, sg.model, sg.optim, sg.train)
