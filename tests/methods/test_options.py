"""Typed per-method options: every registered method declares ``method.options`` as a frozen dataclass,
checked and reported like every other config key; presets and a run's config.yaml round-trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from semantic_genesis import methods
from semantic_genesis.config import load_config, save_config
from semantic_genesis.errors import ConfigError
from semantic_genesis.methods.options import MethodOptions, parse_options

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "semantic_genesis" / "configs"


def _builtin() -> list[str]:
    return [n for n in methods.available() if not n.startswith("test_")]


def _default(field: dataclasses.Field):
    """A field's default as ``as_dict`` writes it (factories called, tuples as lists)."""
    value = field.default_factory() if field.default is dataclasses.MISSING else field.default
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", _builtin())
def test_every_method_types_its_options(name):
    cls = methods.get(name)
    options_class = cls.options_class
    assert issubclass(options_class, MethodOptions) and dataclasses.is_dataclass(options_class)
    assert options_class.__dataclass_params__.frozen
    cfg = load_config(None, [f"method.name={name}"])
    options = parse_options(cfg, options_class, name)
    assert isinstance(options, options_class)
    assert options.as_dict() == {f.name: _default(f) for f in dataclasses.fields(options_class)}
    fields = [f.name for f in dataclasses.fields(options_class)]
    bad = load_config(None, [f"method.name={name}", "method.options.no_such_option=1"])
    expected = (f"unknown config key method.options.no_such_option; "
                + (f"valid keys of method.options: {', '.join(fields)}" if fields else f"method {name!r} takes no"))
    with pytest.raises(ConfigError, match=expected):
        cls(bad)


def test_wrong_types_and_ranges_name_the_dotted_key():
    sg = methods.get("semantic_genesis")
    with pytest.raises(ConfigError, match="method 'semantic_genesis': method.options.lambda_cls: expected a number, got 'high'"):
        sg(load_config(None, ["method.name=semantic_genesis", "method.options.lambda_cls=high"]))
    with pytest.raises(ConfigError, match="method.options.cls_warmup_epochs must be a finite number >= 0, got -1"):
        sg(load_config(None, ["method.name=semantic_genesis", "method.options.cls_warmup_epochs=-1"]))
    with pytest.raises(ConfigError, match="method.options.num_permutations: expected an integer, got 2.5"):
        methods.get("rubiks_cube")(load_config(None, ["method.name=rubiks_cube", "method.options.num_permutations=2.5"]))
    with pytest.raises(ConfigError, match="method.options.rotation_weight must be a finite number >= 0"):
        methods.get("rubiks_cube")(load_config(None, ["method.name=rubiks_cube", "method.options.rotation_weight=-1"]))
    with pytest.raises(ConfigError, match="must not both be 0"):
        methods.get("inpainting")(load_config(None, ["method.name=inpainting", "method.options.inside_weight=0",
                                                     "method.options.outside_weight=0"]))


def test_overrides_reach_the_method():
    method = methods.get("semantic_genesis")(load_config(None, [
        "method.name=semantic_genesis", "method.options.lambda_cls=0.1", "method.options.cls_warmup_epochs=3",
        "method.options.preset=outpaint"]))
    assert (method.options.lambda_rec, method.options.lambda_cls, method.warmup) == (1.0, 0.1, 3)
    assert method.preset_name == "outpaint"
    variant = methods.get("semantic_inpainting")  # its recipe is in-painting's: no preset option
    with pytest.raises(ConfigError, match="unknown config key method.options.preset"):
        variant(load_config(None, ["method.name=semantic_inpainting", "method.options.preset=outpaint"]))
    rubik = methods.get("rubiks_cube")(load_config(None, ["method.name=rubiks_cube", "method.options.num_permutations=10"]))
    assert rubik.recipe.num_permutations == 10


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIGS.glob("*_3d*.yaml")))
def test_shipped_presets_build_their_method_and_round_trip(preset, tmp_path):
    cfg = load_config(CONFIGS / preset)
    method = methods.build(cfg)
    assert isinstance(method.options, method.options_class)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_tiny_semantic_genesis_preset_options():
    method = methods.build(load_config(CONFIGS / "semantic_genesis_3d_tiny.yaml"))
    assert (method.options.lambda_cls, method.options.cls_warmup_epochs) == (0.1, 5)
