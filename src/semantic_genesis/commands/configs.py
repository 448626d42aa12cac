"""``semantic-genesis configs``: the config presets shipped with the package.

Examples::

    semantic-genesis configs                                   # name and description of every preset
    semantic-genesis configs show models_genesis_3d_tiny       # the preset resolved (base: merged, defaults filled)
    semantic-genesis configs show finetune_tiny train.epochs=5 # ... with overrides, as a command would see it
    semantic-genesis configs show models_genesis_3d --path     # where the preset file is

Any command's --config takes a preset name (with or without .yaml) or a YAML file of your own; a
file of your own can start from a preset with "base: NAME" and state only what differs.
"""

from __future__ import annotations

import argparse

NAME = "configs"
HELP = "list the shipped config presets, or print one resolved"
ORDER = 2
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="configs_action", metavar="ACTION")
    show = sub.add_parser("show", help="print a preset (or a YAML file) resolved: base: merged, defaults filled",
                          description="Print a preset or config file resolved (base: merged, defaults filled), "
                                      "with optional key=value overrides applied.")
    show.add_argument("name", metavar="NAME|FILE", help="preset name (see 'semantic-genesis configs') or YAML file")
    show.add_argument("--path", action="store_true", help="print the file's path instead of its contents")
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def _list() -> int:
    from semantic_genesis.config import available_presets, preset_description, presets_dir

    names = available_presets()
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"{name:<{width}}  {preset_description(name)}")
    print(f"\n{len(names)} presets in {presets_dir()}; 'semantic-genesis configs show NAME' prints one resolved")
    return 0


def _show(args: argparse.Namespace) -> int:
    from semantic_genesis.commands._common import print_config
    from semantic_genesis.config import load_config, resolve_config_path

    if args.path:
        print(resolve_config_path(args.name).resolve())
        return 0
    return print_config(load_config(args.name, args.overrides))


def run(args: argparse.Namespace) -> int:
    if getattr(args, "configs_action", None) == "show":
        return _show(args)
    return _list()
