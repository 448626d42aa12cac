"""The ``semantic-genesis`` command line.

Subcommands mirror the pipeline (``phantom``, ``cubes``, ``discover``, ``pretrain``, ``finetune``,
``evaluate``, ``report``, ``weights``, plus ``info`` and ``inspect``). Each lives in its own module in
:mod:`semantic_genesis.commands`, found automatically: a module there defines

* ``NAME`` (the subcommand), ``HELP`` (one line), optionally ``ORDER`` (position in ``--help``),
* ``add_arguments(parser)`` and ``run(args) -> int``

(a :class:`~semantic_genesis.utils.registry.Registry` of modules, :func:`commands`).

Command modules import only the standard library at module level; heavy imports (torch, MONAI,
SimpleITK) happen inside ``run`` so that ``semantic-genesis --help`` is instant.

Errors derived from :class:`~semantic_genesis.errors.SemanticGenesisError` are printed as one line
(``error: <message>``) without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Sequence

from semantic_genesis import __version__

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.utils.registry import Registry

EXIT_USER_ERROR = 2


def commands() -> "Registry":
    """The subcommand registry: every module of :mod:`semantic_genesis.commands` defining ``NAME`` and ``run``."""
    from semantic_genesis.utils.registry import Registry

    return Registry.of_modules("command", "semantic_genesis.commands", "NAME", "run")


def _command_modules() -> list:
    return sorted((m for _, m in commands().items()), key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per command module)."""
    parser = argparse.ArgumentParser(
        prog="semantic-genesis",
        description=(
            "Anatomy-aware self-supervised pretraining for medical imaging (Models Genesis, "
            "Semantic Genesis) and transfer to target tasks."
        ),
    )
    parser.add_argument("--version", action="version", version=f"semantic-genesis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``semantic-genesis`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    from semantic_genesis.errors import SemanticGenesisError

    try:
        return int(args._run(args) or 0)
    except SemanticGenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if os.environ.get("SEMANTIC_GENESIS_DEBUG"):
            raise
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
