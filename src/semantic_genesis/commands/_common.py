"""Helpers shared by command modules (standard library only at import time).

Config commands (``cubes``, ``discover``, ``pretrain``, ``finetune``, ``evaluate``) share one shape:

1. :func:`add_config_arguments` gives them ``--config NAME_OR_FILE``, ``--data``, ``--out``,
   ``--print-config``, ``--dry-run`` and ``key=value`` overrides (anywhere on the line);
2. :func:`load_command_config` folds the flags into the config (a flag and an override of the same key
   that disagree are an error), applies ``-q`` and checks the names the config refers to;
3. ``--print-config`` prints the resolved config and stops (:func:`print_config`);
4. :func:`check_output_folder` and the command's own checks run before anything is written, so a bad
   setting never leaves a half-made run folder behind;
5. ``--dry-run`` stops after the checks with a summary (:func:`dry_run_report`), writing nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

# Flags every config command may have, and the config key each one sets.
BASE_FLAGS = {"data": "data", "out": "out"}
PATH_KEYS = {"data", "out", "patterns", "finetune.init", "discovery.ae_weights"}

CONFIG_EPILOG = (
    "Config: --config takes a YAML file or the name of a shipped preset ('semantic-genesis configs'\n"
    "lists them). key.sub=value overrides may appear anywhere on the line, also after flags; values\n"
    "are read as YAML (1e-3, true, [64, 64, 32], null). A flag such as --data and an override of the\n"
    "same key (data=...) must agree."
)


def add_config_arguments(
    parser: argparse.ArgumentParser,
    data_help: str | None = "input folder (same as data=DIR)",
    out_help: str | None = "output folder (same as out=DIR)",
) -> None:
    """Add ``--config``, ``--data``, ``--out``, ``--print-config``, ``--dry-run`` and ``KEY=VALUE``.

    Args:
        parser: the command's parser.
        data_help / out_help: help of ``--data`` / ``--out``; ``None`` leaves the flag out.
    """
    group = parser.add_argument_group("configuration")
    group.add_argument("--config", "-c", default=None, metavar="NAME|FILE",
                       help="a YAML config file or a shipped preset name (see 'semantic-genesis configs')")
    if data_help:
        group.add_argument("--data", "-d", default=None, metavar="DIR", help=data_help)
    if out_help:
        group.add_argument("--out", "-o", default=None, metavar="DIR", help=out_help)
    group.add_argument("--print-config", action="store_true", help="print the resolved config (YAML) and exit")
    group.add_argument("--dry-run", action="store_true",
                       help="check the config, the data and the output folder, print what would run, write nothing")
    group.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, anywhere on the line, e.g. data=DIR out=runs/x train.batch_size=8",
    )
    parser.epilog = CONFIG_EPILOG if not parser.epilog else parser.epilog + "\n\n" + CONFIG_EPILOG


def _same_value(key: str, a: Any, b: Any) -> bool:
    if key in PATH_KEYS and isinstance(a, str) and isinstance(b, str):
        return os.path.normpath(os.path.expanduser(a)) == os.path.normpath(os.path.expanduser(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return [str(x) for x in a] == [str(x) for x in b]
    return a == b or str(a) == str(b)


def flag_overrides(args: argparse.Namespace, flags: Mapping[str, str]) -> list[tuple[str, Any]]:
    """``(key, value)`` overrides of the flags that were given, checked against ``args.overrides``.

    Args:
        args: parsed arguments (``args.overrides`` holds the ``key=value`` strings).
        flags: attribute name of a flag -> the config key it sets (``{"data": "data"}``).

    Raises:
        ConfigError: a flag and an override set the same key to different values (``--data X data=Y``).
    """
    from semantic_genesis.config import parse_override
    from semantic_genesis.errors import ConfigError

    given = []
    for text in getattr(args, "overrides", []):
        try:
            parts, value = parse_override(text)
        except ConfigError:
            continue  # malformed: load_config reports it
        given.append((".".join(parts), value, text))
    folded = []
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        flag = "--" + attr.replace("_", "-")
        for other_key, other_value, text in given:
            if other_key == key and not _same_value(key, value, other_value):
                raise ConfigError(f"{flag} {value} and {text} disagree; give {key} once")
        folded.append((key, value))
    return folded


def load_command_config(args: argparse.Namespace, flags: Mapping[str, str] | None = None):
    """The root config of a command: ``--config`` <- ``key=value`` overrides <- flags.

    ``-q`` turns the progress bars off (``train.progress`` and ``discovery.progress``).

    Args:
        args: parsed arguments of a command set up with :func:`add_config_arguments`.
        flags: extra flags of the command mapped to config keys (``{"task": "finetune.task"}``);
            ``--data`` and ``--out`` are always folded.

    Raises:
        ConfigError: bad file, key, value, or a flag contradicting an override.
    """
    from semantic_genesis.config import load_config, replace

    folded = flag_overrides(args, {**BASE_FLAGS, **(flags or {})})
    cfg = load_config(args.config, [*args.overrides, *folded])
    if getattr(args, "quiet", 0):
        cfg = replace(cfg, **{"train.progress": False, "discovery.progress": False})
    return cfg


def print_config(cfg: Any) -> int:
    """Print the resolved config as YAML (``--print-config``)."""
    from semantic_genesis.config import dump_yaml

    print(dump_yaml(cfg), end="")
    return 0


def say(args: argparse.Namespace, message: str) -> None:
    """Print a step-by-step message unless ``-q`` was given."""
    if not getattr(args, "quiet", 0):
        print(message, flush=True)


def require(value: Any, what: str, how: str) -> None:
    """A ``ConfigError`` ``"<command> needs <what>: pass <how>"`` when ``value`` is empty."""
    from semantic_genesis.errors import ConfigError

    if not value:
        raise ConfigError(f"no {what}: pass {how}")


def check_input_path(path: str | os.PathLike, what: str, key: str = "data") -> Path:
    """An existing input file or folder, or a one-line error naming ``key`` and the path."""
    from semantic_genesis.errors import DataError

    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{key}={path}: no such {what}")
    return p


def check_output_folder(path: str | os.PathLike, key: str = "out") -> str:
    """Check that ``path`` can be a run folder, before anything is written.

    Returns:
        ``"new"`` (it does not exist yet), ``"empty"`` (an empty folder) or ``"existing"`` (a folder
        with files: the command resumes or refuses, as it documents).

    Raises:
        ConfigError: ``path`` is a file, lies below a file, or cannot be written.
    """
    from semantic_genesis.errors import ConfigError

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{key}={path}: is a file, not a folder; give a new or existing run folder")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}={path}: the folder is not writable")
        return "existing" if any(p.iterdir()) else "empty"
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={path}: {parent} is a file, so the folder cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: cannot create the folder, {parent} is not writable")
    return "new"


def check_output_file(path: str | os.PathLike, what: str = "OUT") -> None:
    """Check that ``path`` can be written as a file, before any work is done.

    Raises:
        ConfigError: ``path`` is a folder, lies below a file, or its folder cannot be written.
    """
    from semantic_genesis.errors import ConfigError

    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{what} {path}: is a folder; give a file name (e.g. {p / 'weights.safetensors'})")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} {path}: {parent} is a file, so {p.name} cannot be written below it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: {parent} is not writable")


def check_names(cfg: Any, *, method: bool = False, model: bool = False, transforms: bool = False,
                task: bool = False) -> None:
    """Check the registry names the config refers to (before any folder is made).

    Raises:
        ConfigError: an unknown method, model, transform preset (or preset option) or task; the
            messages list the valid names.
    """
    if method:
        from semantic_genesis import methods

        methods.get(cfg.method.name)
    if model:
        from semantic_genesis.models.registry import model_class

        model_class(cfg.model.name)
    if transforms:
        from semantic_genesis.transforms import build_preset

        build_preset(cfg.transforms.preset, **dict(cfg.transforms.overrides))
    if task:
        from semantic_genesis.finetune import tasks

        tasks.get(cfg.finetune.task)


def dry_run_report(command: str, lines: list[str]) -> int:
    """Print the ``--dry-run`` summary (what would run) and return 0."""
    print(f"dry run of '{command}': the config, data and output folder are usable; nothing was written")
    for line in lines:
        print(f"  {line}")
    return 0


def describe_output(path: str, state: str, resume_note: str = "reruns resume") -> str:
    """``out: PATH (new | empty | exists: ...)`` for dry-run summaries."""
    text = {"new": "will be created", "empty": "empty folder", "existing": f"exists ({resume_note})"}[state]
    return f"out   {path}: {text}"
