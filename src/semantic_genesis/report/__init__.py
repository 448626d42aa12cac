"""Figures and tables. Each module that defines ``REPORT_NAME`` becomes ``semantic-genesis report NAME``.

A report module defines ``REPORT_NAME``, ``REPORT_HELP``, ``add_report_arguments(parser)`` and
``run_report(args) -> int``, and imports only the standard library at module level.
"""
