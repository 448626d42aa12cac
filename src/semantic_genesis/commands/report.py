"""``semantic-genesis report KIND ...``: figures and tables (transforms, patterns, restorations, curves, results).

Report kinds are the :mod:`semantic_genesis.report` modules that define ``REPORT_NAME`` (a
:class:`~semantic_genesis.utils.registry.Registry` of modules, :func:`report_kinds`).
"""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "figures and tables: transform gallery, discovered patterns, restorations, training curves, results tables"
ORDER = 80


def report_kinds():
    """The report-kind registry: modules of :mod:`semantic_genesis.report` defining ``REPORT_NAME`` and ``run_report``."""
    from semantic_genesis.utils.registry import Registry

    return Registry.of_modules("report kind", "semantic_genesis.report", "REPORT_NAME", "run_report")


def _report_modules() -> list:
    return [module for _, module in report_kinds().items()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="report_kind", metavar="KIND")
    for module in _report_modules():
        p = sub.add_parser(module.REPORT_NAME, help=module.REPORT_HELP, description=module.REPORT_HELP)
        module.add_report_arguments(p)
        p.set_defaults(_run_report=module.run_report)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_run_report", None) is None:
        from semantic_genesis.errors import ConfigError

        raise ConfigError(f"report needs a kind; available: {', '.join(report_kinds().available()) or 'none installed'}")
    return int(args._run_report(args) or 0)
