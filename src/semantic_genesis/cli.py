"""The ``semantic-genesis`` command line.

Subcommands mirror the pipeline (``phantom``, ``cubes``, ``discover``, ``pretrain``, ``finetune``,
``evaluate``, ``report``, ``weights``, plus ``info``, ``inspect`` and ``configs``). Each lives in its
own module in :mod:`semantic_genesis.commands`, found automatically: a module there defines

* ``NAME`` (the subcommand), ``HELP`` (one line), optionally ``ORDER`` (position in ``--help``) and
  ``DESCRIPTION`` (the ``--help`` text; line breaks are kept),
* ``add_arguments(parser)`` and ``run(args) -> int``

(a :class:`~semantic_genesis.utils.registry.Registry` of modules, :func:`commands`).

Command modules import only the standard library at module level; heavy imports (torch, MONAI,
SimpleITK) happen inside ``run`` so that ``semantic-genesis --help`` is instant.

Habits every command shares (added here, so a command module cannot forget them):

* ``-q/--quiet`` (no progress bars or step-by-step messages) and ``-v/--verbose`` (log messages; with
  an error, its traceback), before or after the subcommand;
* config commands (those using :func:`~semantic_genesis.commands._common.add_config_arguments`)
  take ``key.sub=value`` overrides anywhere on the line, also after flags;
* errors derived from :class:`~semantic_genesis.errors.SemanticGenesisError` are printed as one line
  (``error: <message>``) without a traceback and exit with status 2; warnings as ``warning: ...``;
* a closed output pipe (``semantic-genesis configs | head``) ends the command quietly;
* Ctrl-C / SIGTERM during training write a checkpoint at the next step boundary, print one
  ``interrupted: ...`` line and exit with 130 / 143 (``128 + signal``); rerunning resumes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING, Iterator, Sequence

from semantic_genesis import __version__

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.utils.registry import Registry

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# `key.sub=value` with a Python-identifier-like dotted key (so `--flag=x` and `x=y` paths are not taken).
OVERRIDE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=")


def commands() -> "Registry":
    """The subcommand registry: every module of :mod:`semantic_genesis.commands` defining ``NAME`` and ``run``."""
    from semantic_genesis.utils.registry import Registry

    return Registry.of_modules("command", "semantic_genesis.commands", "NAME", "run")


def _command_modules() -> list:
    return sorted((m for _, m in commands().items()), key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions (example blocks stay one command per line)."""


def help_text(doc: str) -> str:
    """A module docstring as ``--help`` text: reStructuredText markup (````x````, ``Examples::``) dropped."""
    text = doc.strip("\n")
    text = re.sub(r"::$", ":", text, flags=re.MULTILINE)
    text = text.replace("``", "")
    return re.sub(r":(?:func|class|mod|meth|attr):`~?([^`]+)`", r"\1", text)


def _walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and all parsers below it (nested subcommands such as ``phantom ct``)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _walk(sub)


def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` (counts; absent unless given, so levels can be mixed)."""
    group = parser.add_argument_group("output")
    group.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                       help="no progress bars or step-by-step messages (results, warnings and errors remain)")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="log messages (-vv: debug); on an error, also its traceback")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per command module)."""
    parser = argparse.ArgumentParser(
        prog="semantic-genesis",
        description=(
            "Anatomy-aware self-supervised pretraining for medical imaging (Models Genesis,\n"
            "Semantic Genesis) and transfer to target tasks.\n\n"
            "Run 'semantic-genesis COMMAND --help' for a command's options and examples;\n"
            "'semantic-genesis configs' lists the shipped config presets."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"semantic-genesis {__version__}")
    add_verbosity_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, formatter_class=HelpFormatter,
                           description=help_text(getattr(module, "DESCRIPTION", None) or module.HELP))
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
        p.set_defaults(_run=module.run)
        for leaf in _walk(p):
            leaf.formatter_class = HelpFormatter
            if leaf.description:
                leaf.description = help_text(leaf.description)
            add_verbosity_arguments(leaf)
            leaf.set_defaults(_parser=leaf)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` tokens anywhere become ``args.overrides`` of config commands.

    Anything else argparse does not know is an error printed with the usage line of the subcommand
    it was given to (not the top-level one).
    """
    args, extras = parser.parse_known_args(list(argv))
    leaf = getattr(args, "_parser", parser)
    takes_overrides = hasattr(args, "overrides")
    overrides = list(getattr(args, "overrides", None) or [])
    unknown = []
    for token in extras:
        if takes_overrides and OVERRIDE_PATTERN.match(token):
            overrides.append(token)
        else:
            unknown.append(token)
    if unknown:
        hint = ""
        if any(OVERRIDE_PATTERN.match(t) for t in unknown):
            hint = f" ('{leaf.prog}' takes no key=value config overrides)"
        leaf.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if takes_overrides:
        args.overrides = overrides
    args.quiet = getattr(args, "quiet", 0)
    args.verbose = getattr(args, "verbose", 0)
    return args


def _configure_output(verbose: int) -> None:
    """Logging level from ``-v``; warnings as one ``warning: ...`` line (source location with ``-v``)."""
    import logging
    import warnings

    if verbose > 0:
        level = logging.INFO if verbose == 1 else logging.DEBUG
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("semantic_genesis").setLevel(level)
        return

    def one_line(message, category, filename, lineno, line=None):  # noqa: ANN001 - the warnings API
        return f"warning: {message}\n"

    warnings.formatwarning = one_line


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (e.g. captured output)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``semantic-genesis`` console script."""
    try:
        try:
            return _main(sys.argv[1:] if argv is None else argv)
        finally:  # also after --help / usage errors (SystemExit): a closed pipe surfaces here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`... | head`): nothing left to say
        _silence_stdout()
        return 0


def _main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    _configure_output(args.verbose)
    from semantic_genesis.errors import RunInterrupted, SemanticGenesisError, error_line, os_error_line

    try:
        return int(args._run(args) or 0)
    except SemanticGenesisError as exc:
        _traceback_if_asked(args.verbose)
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        raise  # `... | head`: handled quietly by main()
    except OSError as exc:  # a full disk, a read-only or vanished folder: the system's reason, one line
        _traceback_if_asked(args.verbose)
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RunInterrupted as exc:  # SIGINT / SIGTERM during training: a checkpoint was written
        print(f"interrupted: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _traceback_if_asked(verbose: int) -> None:
    """Print the current exception's traceback under ``-v`` or ``SEMANTIC_GENESIS_DEBUG``."""
    if verbose or os.environ.get("SEMANTIC_GENESIS_DEBUG"):
        import traceback

        traceback.print_exc()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
