"""Helpers shared by command modules (standard library only at import time)."""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and free ``key.sub=value`` overrides to a command."""
    parser.add_argument("--config", "-c", default=None, help="YAML config file (see configs/)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. data=DIR out=runs/x train.batch_size=8",
    )


def load_command_config(args: argparse.Namespace):
    """Load the root config from ``args.config`` and ``args.overrides``."""
    from semantic_genesis.config import load_config

    return load_config(args.config, args.overrides)
