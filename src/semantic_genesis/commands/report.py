"""``semantic-genesis report KIND ...``: figures and tables (transforms, patterns, restorations, curves, results).

Report kinds are discovered from :mod:`semantic_genesis.report` modules that define ``REPORT_NAME``.
"""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "figures and tables: transform gallery, discovered patterns, restorations, training curves, results tables"
ORDER = 80


def _report_modules() -> list:
    from semantic_genesis.cli import plugin_modules

    return sorted(plugin_modules("semantic_genesis.report", "REPORT_NAME", "run_report"), key=lambda m: m.REPORT_NAME)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="report_kind", metavar="KIND")
    for module in _report_modules():
        p = sub.add_parser(module.REPORT_NAME, help=module.REPORT_HELP, description=module.REPORT_HELP)
        module.add_report_arguments(p)
        p.set_defaults(_run_report=module.run_report)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_run_report", None) is None:
        names = ", ".join(m.REPORT_NAME for m in _report_modules()) or "none installed"
        from semantic_genesis.errors import ConfigError

        raise ConfigError(f"report needs a kind; available: {names}")
    return int(args._run_report(args) or 0)
