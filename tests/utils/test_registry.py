"""The one registry helper, and every registry of the package built on it."""

from __future__ import annotations

import sys

import pytest

from semantic_genesis.errors import ConfigError
from semantic_genesis.utils.registry import Registry


def test_register_get_available_and_errors():
    reg: Registry[object] = Registry("widget", key="widgets.name")

    @reg.register()
    class Alpha:
        name = "alpha"

    reg.add("beta", 2)
    reg.register("gamma")(len)
    assert reg.get("alpha") is Alpha and reg.get("beta") == 2 and reg.get("gamma") is len
    assert reg.available() == ["alpha", "beta", "gamma"] and "beta" in reg and "delta" not in reg
    assert len(reg) == 3 and list(reg) == reg.available()
    with pytest.raises(ConfigError, match=r"unknown widget 'delta' \(widgets.name\); available: alpha, beta, gamma"):
        reg.get("delta")
    with pytest.raises(ConfigError, match="already registered"):
        reg.add("beta", 3)
    reg.add("beta", 3, replace=True)
    assert reg.get("beta") == 3
    reg.register()(Alpha)  # the same entry again is fine
    with pytest.raises(ConfigError, match="needs a name"):
        reg.register()(object())


def test_insertion_order_when_not_sorted():
    reg: Registry[int] = Registry("thing", sort=False)
    for name in ("b", "c", "a"):
        reg.add(name, 0)
    assert reg.available() == ["b", "c", "a"]
    with pytest.raises(ConfigError, match="available: b, c, a"):
        reg.get("x")


def test_lazy_entries_are_imported_on_first_get(monkeypatch):
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    reg: Registry[object] = Registry("tool")
    reg.add_lazy("json_tool", "json.tool:main")
    assert reg.available() == ["json_tool"] and "json.tool" not in sys.modules  # listing imports nothing
    import json.tool

    assert reg.get("json_tool") is json.tool.main


def test_modules_are_imported_on_first_query(tmp_path, monkeypatch):
    (tmp_path / "sg_plugin_registry.py").write_text(
        "from semantic_genesis.utils.registry import Registry\n"
        "PLUGINS = Registry('plugin entry', modules=['sg_plugin_mod'])\n", encoding="utf-8")
    (tmp_path / "sg_plugin_mod.py").write_text(
        "from sg_plugin_registry import PLUGINS\n\n\n@PLUGINS.register('from_plugin')\ndef entry():\n    return 42\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sg_plugin_registry

    assert "sg_plugin_mod" not in sys.modules
    assert sg_plugin_registry.PLUGINS.available() == ["from_plugin"]  # the module was imported now
    assert sg_plugin_registry.PLUGINS.get("from_plugin")() == 42
    for name in ("sg_plugin_mod", "sg_plugin_registry"):
        monkeypatch.delitem(sys.modules, name)


def _registries():
    """Every registry of the package: (registry, a name it holds, its public listing function)."""
    from semantic_genesis import methods
    from semantic_genesis.cli import commands
    from semantic_genesis.commands.report import report_kinds
    from semantic_genesis.finetune import tasks
    from semantic_genesis.io.datasets import LAYOUTS
    from semantic_genesis.models.registry import MODELS, available
    from semantic_genesis.transforms.presets import PRESETS, available_presets

    return {
        "methods": (methods.METHODS, "models_genesis", methods.available),
        "models": (MODELS, "unet3d", available),
        "transform presets": (PRESETS, "models_genesis", available_presets),
        "target tasks": (tasks.TASKS, "ncc", tasks.available),
        "dataset layouts": (LAYOUTS, "luna16", LAYOUTS.available),
        "commands": (commands(), "pretrain", None),
        "report kinds": (report_kinds(), "transforms", None),
    }


@pytest.mark.parametrize("which", list(_registries()))
def test_every_registry_uses_the_helper(which):
    registry, known, listing = _registries()[which]
    assert isinstance(registry, Registry)
    assert known in registry.available() and registry.get(known) is not None
    if listing is not None:
        assert listing() == registry.available()
    with pytest.raises(ConfigError, match=f"unknown {registry.kind} 'no_such_name'.*available: "):
        registry.get("no_such_name")
