"""Pretraining methods, registered by name (``method.name`` in the config).

A method is one module in this package that subclasses :class:`~semantic_genesis.methods.base.Method`
and decorates it with :func:`register`. Modules listed in :data:`BUILTIN_MODULES` are imported lazily
the first time the registry is queried, so importing this package stays cheap.

Example::

    from semantic_genesis import methods

    methods.available()                      # ['models_genesis', ...]
    method = methods.build(cfg)              # instance of the class named cfg.method.name
    cls = methods.get("models_genesis")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, TypeVar

from semantic_genesis.errors import ConfigError
from semantic_genesis.methods.base import Method, StepContext, StepOutput

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config

__all__ = ["Method", "StepContext", "StepOutput", "register", "get", "build", "available", "BUILTIN_MODULES"]

M = TypeVar("M", bound=type)

# Method modules shipped with the package; each registers its class(es) when imported. A module that
# is listed but not (yet) present is skipped, so engineers can add theirs independently.
BUILTIN_MODULES: tuple[str, ...] = (
    "models_genesis",
    "semantic_genesis",
    "autoencoder",
    "inpainting",
    "patch_shuffling",
    "rubiks_cube",
    "self_classification",
    "semantic_addon",
)

_REGISTRY: dict[str, type[Method]] = {}
_loaded = False


def register(name: str | None = None) -> Callable[[M], M]:
    """Class decorator registering a :class:`Method` subclass under ``name`` (default: ``cls.name``).

    Raises:
        ConfigError: the name is empty or already taken by another class.
    """

    def decorator(cls: M) -> M:
        key = name or getattr(cls, "name", "")
        if not key:
            raise ConfigError(f"method class {cls.__name__} needs a name to be registered")
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise ConfigError(f"{cls!r} is not a subclass of semantic_genesis.methods.Method")
        existing = _REGISTRY.get(key)
        if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
            raise ConfigError(f"method name {key!r} is already registered by {existing.__module__}.{existing.__qualname__}")
        if not cls.name:
            cls.name = key
        _REGISTRY[key] = cls
        return cls

    return decorator


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":  # a real missing dependency inside the module
                raise


def available() -> list[str]:
    """Sorted names of all registered methods."""
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> type[Method]:
    """The method class registered as ``name``.

    Raises:
        ConfigError: unknown name (the message lists the available methods).
    """
    _load_builtins()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r} (method.name); available: {', '.join(available()) or 'none'}")
    return _REGISTRY[name]


def build(cfg: "Config") -> Method:
    """Instantiate the method named by ``cfg.method.name`` with the whole config."""
    return get(cfg.method.name)(cfg)
