"""The project's exception types.

Every error raised for bad user input derives from :class:`SemanticGenesisError`, so the CLI can print
it as one clear line (without a traceback) and exit non-zero. Messages name the file, the offending
value and what was expected.
"""

from __future__ import annotations

from pathlib import Path


class SemanticGenesisError(Exception):
    """Base class of all errors the project raises on purpose."""


class ConfigError(SemanticGenesisError, ValueError):
    """A configuration is invalid: unknown key, wrong type, contradictory options."""


class DataError(SemanticGenesisError, ValueError):
    """Input data is missing, malformed or unsuitable (wrong shape, NaNs, too small...)."""


class ImageReadError(DataError):
    """A medical image could not be read (missing, unsupported, corrupt, wrong dimensionality)."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DatasetLayoutError(DataError):
    """A folder does not follow the expected public-dataset layout."""


class CheckpointError(SemanticGenesisError, ValueError):
    """A weights file or checkpoint is missing, corrupt, untrusted or does not fit the model."""


class TrainingError(SemanticGenesisError, RuntimeError):
    """Training cannot continue (e.g. the loss became NaN/inf)."""


class RunInUseError(SemanticGenesisError, RuntimeError):
    """Another process is writing the same run folder (it holds ``RUN/.lock``)."""


class RunInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint at a step boundary.

    A :class:`KeyboardInterrupt` (not an ``Exception``), so generic error handlers let it through, as
    they do Ctrl-C. The CLI prints :attr:`message` and exits with ``128 + signum`` (130 / 143).

    Attributes:
        signum: the signal received.
        message: one line: where the run stopped and how to resume it.
    """

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = int(signum)
        self.message = message

    def __str__(self) -> str:
        return self.message


def describe_path(path: str | Path) -> str:
    """Return ``path`` as an absolute string for error messages."""
    return str(Path(path).expanduser().resolve())


def error_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, for ``error: ...``.

    An error raised in a ``torch.utils.data.DataLoader`` worker reaches the main process re-raised with
    the worker's traceback in its message (``Caught DataError in DataLoader worker process 1.
    Original Traceback ... semantic_genesis.errors.DataError: <message>``); this returns its last
    line's ``<message>``. Other messages are returned unchanged.
    """
    text = str(exc)
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    head, sep, message = last.partition(": ")
    return message if sep and " " not in head else last


def os_error_line(exc: OSError) -> str:
    """An operating-system error as ``FILE: reason`` on one line, for ``error: ...``.

    The disk filling up, a read-only or vanished folder, a file another program removed: these reach
    the CLI as :class:`OSError` from wherever the write or read happened. The file it names (both, for
    a rename) and the system's reason are what a user needs; the traceback is not.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    where = str(exc.filename)
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    return f"{where}: {reason}"
