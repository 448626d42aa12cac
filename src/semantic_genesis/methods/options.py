"""Typed per-method options: ``method.options`` as a frozen dataclass owned by each method.

The ``method`` config section is ``name`` (the method) plus ``options``, a mapping whose keys belong to
the method. Each method declares them as a frozen dataclass (its ``options_class``, a subclass of
:class:`MethodOptions`, e.g. ``SemanticGenesisOptions(lambda_rec, lambda_cls, cls_warmup_epochs,
preset)``) and reads them as ``self.options``. :func:`parse_options` builds that dataclass with the
config machinery, so a method option is checked and reported like every other config key::

    method.options.lambda_cls=0.1            # a key=value override
    unknown config key method.options.lambda_clss; valid keys of method.options: lambda_rec, ...
    method.options.lambda_cls: expected a number, got 'high'

Range checks live in each dataclass's ``__post_init__`` and name the dotted key too. The config keeps
the mapping as written (so a run's ``config.yaml`` round-trips); the method's weights metadata records
the resolved values.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from semantic_genesis.config import from_dict, to_dict
from semantic_genesis.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config

O = TypeVar("O", bound="MethodOptions")

PREFIX = "method.options"


@dataclass(frozen=True)
class MethodOptions:
    """The options of a method that has none (every key under ``method.options`` is refused)."""

    def as_dict(self) -> dict[str, Any]:
        """The options as plain values (for weights metadata and listings)."""
        return to_dict(self)


def parse_options(cfg: "Config", options_class: type[O], method: str) -> O:
    """``cfg.method.options`` as ``options_class``, checked.

    Raises:
        ConfigError: an unknown key (naming ``method.options.KEY`` and listing the valid keys), a value
            of the wrong type, or out of range.
    """
    given = dict(cfg.method.options or {})
    if given and not dataclasses.fields(options_class):
        raise ConfigError(f"unknown config key {PREFIX}.{next(iter(given))}; method {method!r} takes no {PREFIX}")
    try:
        return from_dict(options_class, given, prefix=PREFIX)
    except ConfigError as exc:
        raise ConfigError(f"method {method!r}: {exc}") from None


def check_non_negative(options: MethodOptions, *names: str) -> None:
    """Raise :class:`ConfigError` naming ``method.options.NAME`` unless each field is finite and >= 0."""
    for name in names:
        value = getattr(options, name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{PREFIX}.{name} must be a finite number >= 0, got {value!r}")
