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
        ("cubes.border_fraction=[0.1, 0.1]", r"cubes.border_fraction: expected 3 values"),  # cube_size takes 2 (2D) or 3
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
    for suffix in ("_3d", "_3d_tiny"):
        sg = load_config(f"semantic_genesis{suffix}")
        for variant in ("semantic_inpainting", "semantic_patch_shuffling", "semantic_models_genesis", "self_classification"):
            cfg = load_config(f"{variant}{suffix}")
            assert cfg.method.name == variant
            assert (cfg.discovery, cfg.model, cfg.optim, cfg.train) == (sg.discovery, sg.model, sg.optim, sg.train)


def test_presets_are_found_by_name_with_or_without_suffix():
    from semantic_genesis.config import available_presets, preset_description, presets_dir, resolve_config_path

    names = available_presets()
    assert {"models_genesis_3d", "models_genesis_3d_tiny", "semantic_genesis_3d", "finetune_tiny"} <= set(names)
    assert resolve_config_path("models_genesis_3d_tiny") == presets_dir() / "models_genesis_3d_tiny.yaml"
    assert load_config("models_genesis_3d_tiny") == load_config("models_genesis_3d_tiny.yaml")
    assert load_config("models_genesis_3d_tiny").model.width == 0.125
    descriptions = [preset_description(n) for n in names]
    assert all(descriptions) and len(set(descriptions)) == len(names)  # one distinct line per preset


def test_a_file_wins_over_a_preset_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models_genesis_3d_tiny.yaml").write_text("seed: 42\n")
    assert load_config("models_genesis_3d_tiny.yaml").seed == 42
    assert load_config("models_genesis_3d_tiny").seed == 0  # no file named without the suffix: the preset


def test_unknown_config_names_suggest_presets():
    with pytest.raises(ConfigError, match=r"models_genesis_3d_tin: config file not found.*did you mean models_genesis_3d_tiny"):
        load_config("models_genesis_3d_tin")
    with pytest.raises(ConfigError, match=r"configs/finetune_tiny.yaml: config file not found; the shipped preset of that name is --config finetune_tiny"):
        load_config("configs/finetune_tiny.yaml")


def test_own_config_can_extend_a_preset_by_name(tmp_path):
    (tmp_path / "mine.yaml").write_text("base: models_genesis_3d_tiny\ntrain:\n  max_steps: 7\n")
    cfg = load_config(tmp_path / "mine.yaml")
    tiny = load_config("models_genesis_3d_tiny")
    assert cfg.train.max_steps == 7 and cfg.model == tiny.model and cfg.cubes == tiny.cubes
    (tmp_path / "other.yaml").write_text("base: no_such_preset.yaml\n")
    with pytest.raises(ConfigError, match=r"base config .*no_such_preset.yaml not found \(nor a shipped preset"):
        load_config(tmp_path / "other.yaml")


def test_duplicate_keys_are_errors_naming_key_and_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\noptim:\n  lr: 0.1\n  name: sgd\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: line 5: duplicate key 'lr' \(first given on line 3\)"):
        load_config(path)
    path.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"line 2: duplicate key 'seed'"):
        load_config(path)
    # YAML merge keys may be overridden by explicit keys: not a duplicate
    from semantic_genesis.config import read_yaml

    path.write_text("anchors: &a {lr: 0.1, name: sgd}\nmerged:\n  <<: *a\n  lr: 0.5\n")
    assert read_yaml(path)["merged"] == {"lr": 0.5, "name": "sgd"}


def test_non_utf8_config_is_a_one_line_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("seed: 1\n# r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 on line 2\)"):
        load_config(path)
    path.write_bytes(b"\xef\xbb\xbfseed: 3\n")  # a UTF-8 byte-order mark is fine
    assert load_config(path).seed == 3


def test_scalar_where_a_section_belongs_is_an_error(tmp_path):
    path = tmp_path / "scalar.yaml"
    path.write_text("optim: 5\n")
    with pytest.raises(ConfigError, match=r"scalar.yaml: optim: expected a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"scalar.yaml: optim: expected a mapping"):
        load_config(path, ["optim.lr=0.1"])
    from semantic_genesis.config import apply_overrides

    with pytest.raises(ConfigError, match=r"optim is 5, not a section, so 'optim.lr=0.1' cannot be applied"):
        apply_overrides({"optim": 5}, ["optim.lr=0.1"])


def test_errors_say_whether_the_file_or_the_command_line_is_wrong(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  batch_size: 4\n")
    with pytest.raises(ConfigError, match=r"^command line: unknown config key train.batchsize"):
        load_config(path, ["train.batchsize=3"])
    with pytest.raises(ConfigError, match=r"^command line: train.epochs: expected an integer"):
        load_config(path, ["train.epochs=many"])
    path.write_text("train:\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key train.batchsize"):
        load_config(path, ["train.epochs=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=1e38", r"optim.lr: 1e\+38 overflows float32 \(the optimiser's first step is 10 x lr\)"),
        ("optim.lr=1e39", r"optim.lr: 1e\+39 overflows float32"),
        ("optim.lr=.inf", r"optim.lr: inf is not a finite number"),
        ("optim.lr=.nan", r"optim.lr: nan is not a finite number"),
        ("optim.lr=0", r"optim.lr: must be > 0"),
        ("optim.lr=-0.1", r"optim.lr: must be > 0"),
        ("optim.min_lr=-1", r"optim.min_lr: must be >= 0"),
        ("optim.betas=[1.0, 0.999]", r"optim.betas: each must be in \[0, 1\)"),
        ("discovery.ae_lr=1e38", r"discovery.ae_lr: 1e\+38 overflows float32"),
    ],
)
def test_unusable_learning_rates_are_refused_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_large_but_usable_learning_rates_load():
    assert load_config(None, ["optim.lr=1e30"]).optim.lr == 1e30
    assert load_config(None, ["optim.name=sgd", "optim.lr=1e38"]).optim.lr == 1e38  # SGD steps lr x grad
    assert load_config(None, ["optim.min_lr=0"]).optim.min_lr == 0.0
