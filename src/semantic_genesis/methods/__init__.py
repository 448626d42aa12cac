"""Pretraining methods, registered by name (``method.name`` in the config).

A method is one module in this package that subclasses :class:`~semantic_genesis.methods.base.Method`
and decorates it with :func:`register`. Modules listed in :data:`BUILTIN_MODULES` are imported the
first time the registry (:data:`METHODS`, a :class:`~semantic_genesis.utils.registry.Registry`) is
queried, so importing this package stays cheap.

Example::

    from semantic_genesis import methods

    methods.available()                      # ['models_genesis', ...]
    method = methods.build(cfg)              # instance of the class named cfg.method.name
    cls = methods.get("models_genesis")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

from semantic_genesis.errors import ConfigError
from semantic_genesis.methods.base import Method, StepContext, StepOutput
from semantic_genesis.utils.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config

__all__ = ["Method", "StepContext", "StepOutput", "register", "get", "build", "available", "BUILTIN_MODULES", "METHODS"]

M = TypeVar("M", bound=type)

# Method modules shipped with the package; each registers its class(es) when imported.
BUILTIN_MODULES: tuple[str, ...] = (
    "models_genesis",
    "semantic_genesis",
    "autoencoder",
    "inpainting",
    "patch_shuffling",
    "rubiks_cube",
    "self_classification",
    "semantic_addon",
    "peac",
    "ark",
)

#: The method registry (name -> :class:`Method` subclass).
METHODS: Registry[type[Method]] = Registry("method", key="method.name", modules=[f"{__name__}.{m}" for m in BUILTIN_MODULES])


def register(name: str | None = None) -> Callable[[M], M]:
    """Class decorator registering a :class:`Method` subclass under ``name`` (default: ``cls.name``).

    Raises:
        ConfigError: not a :class:`Method` subclass, no name, or the name is taken by another class.
    """

    def decorator(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise ConfigError(f"{cls!r} is not a subclass of semantic_genesis.methods.Method")
        METHODS.register(name)(cls)
        if not cls.name:
            cls.name = name
        return cls

    return decorator


def available() -> list[str]:
    """Sorted names of all registered methods."""
    return METHODS.available()


def get(name: str) -> type[Method]:
    """The method class registered as ``name``.

    Raises:
        ConfigError: unknown name (the message lists the available methods).
    """
    return METHODS.get(name)


def build(cfg: "Config") -> Method:
    """Instantiate the method named by ``cfg.method.name`` with the whole config."""
    return get(cfg.method.name)(cfg)
