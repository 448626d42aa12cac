"""One small registry of named things, shared by every registry of the package.

Methods, models, transform presets, target tasks, dataset layouts, CLI subcommands and report kinds
are each a :class:`Registry`: a mapping from a name to an entry (a class, an object, a function or a
module). Entries come in three ways:

* ``@registry.register()`` on a class (named by its ``name`` attribute) or ``registry.register("x")``
  on anything, or ``registry.add("x", entry)``;
* ``registry.add_lazy("x", "package.module:attribute")``: imported the first time ``x`` is asked for,
  so listing or looking up a cheap entry never imports the heavy ones (torch, MONAI);
* ``Registry(..., modules=[...])``: modules imported on the first query, each registering its own
  entries with the decorator (plugins that live in their own files);
* :meth:`Registry.of_modules`: the modules of a package that define a name attribute (CLI
  subcommands, report kinds), so adding one is adding one file.

``get(name)`` raises :class:`~semantic_genesis.errors.ConfigError` naming the unknown name, the config
key that chose it (when given) and the available names; ``available()`` lists the names.

Example::

    TASKS = Registry("target task", key="finetune.task")
    TASKS.add("ncc", NCC())
    TASKS.get("ncx")  # ConfigError: unknown target task 'ncx' (finetune.task); available: ncc
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from semantic_genesis.errors import ConfigError

T = TypeVar("T")


def import_target(target: str) -> object:
    """Import ``"package.module:attribute"`` (or a whole module, without ``:attribute``)."""
    module, _, attr = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attr) if attr else loaded


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what an entry is, in messages (``"method"``, ``"model"``, ``"target task"``).
        key: the config key or option that names an entry (``"method.name"``), quoted in errors.
        modules: modules imported on the first query; each registers its entries when imported.
        sort: ``available()`` sorted by name (True) or in registration order (False).
    """

    def __init__(self, kind: str, key: str = "", modules: Iterable[str] = (), sort: bool = True):
        self.kind = kind
        self.key = key
        self.sort = sort
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._order: list[str] = []
        self._modules = tuple(modules)
        self._loading = False
        self._loaded = not self._modules

    @classmethod
    def of_modules(cls, kind: str, package: str, name_attr: str, *required: str, key: str = "") -> "Registry[ModuleType]":
        """The public modules of ``package`` that define ``name_attr`` and every attribute in ``required``,
        each registered under the value of its ``name_attr`` (the modules are imported now)."""
        registry: Registry[ModuleType] = cls(kind, key=key)  # type: ignore[assignment]
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package}.{info.name}")
            if all(hasattr(module, attr) for attr in (name_attr, *required)):
                registry.add(getattr(module, name_attr), module)
        return registry

    # -- registering ---------------------------------------------------------------------------------
    def add(self, name: str, entry: T, replace: bool = False) -> T:
        """Register ``entry`` as ``name`` and return it.

        Raises:
            ConfigError: empty name, or the name is taken by another entry (unless ``replace``). Adding
                the same entry again, or a class of the same qualified name (a module imported twice
                under two names, e.g. by a test runner), is allowed.
        """
        if not name or not isinstance(name, str):
            raise ConfigError(f"a {self.kind} needs a non-empty name, got {name!r} for {entry!r}")
        existing = self._entries.get(name)
        if existing is not None and existing is not entry and not replace and not _same_class(existing, entry):
            raise ConfigError(f"{self.kind} name {name!r} is already registered by {_describe(existing)}")
        if name not in self._entries and name not in self._lazy:
            self._order.append(name)
        self._lazy.pop(name, None)
        self._entries[name] = entry
        return entry

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``name`` as ``"package.module:attribute"``, imported on the first :meth:`get`."""
        if name not in self._entries and name not in self._lazy:
            self._order.append(name)
        self._lazy[name] = target

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated object as ``name`` (default: its ``name`` attribute)."""

        def decorator(entry: T) -> T:
            key = name or getattr(entry, "name", "")
            if not key:
                raise ConfigError(f"{_describe(entry)} needs a name to be registered as a {self.kind}")
            return self.add(key, entry)

        return decorator

    # -- querying ------------------------------------------------------------------------------------
    def _load_modules(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True  # a module that queries the registry while registering sees what is there
        try:
            for module in self._modules:
                importlib.import_module(module)
        finally:
            self._loading = False
        self._loaded = True

    def available(self) -> list[str]:
        """The registered names (sorted, or in registration order for ``sort=False``)."""
        self._load_modules()
        return sorted(self._order) if self.sort else list(self._order)

    def __contains__(self, name: object) -> bool:
        self._load_modules()
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())

    def __len__(self) -> int:
        return len(self.available())

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ConfigError: unknown name; the message names the config key and lists the available names.
        """
        self._load_modules()
        if name in self._entries:
            return self._entries[name]
        if name in self._lazy:
            entry = import_target(self._lazy[name])
            self._entries[name] = entry  # type: ignore[assignment]
            del self._lazy[name]
            return entry  # type: ignore[return-value]
        where = f" ({self.key})" if self.key else ""
        raise ConfigError(
            f"unknown {self.kind} {name!r}{where}; available: {', '.join(self.available()) or 'none'}"
        )

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in :meth:`available` order (imports every lazy entry)."""
        return [(name, self.get(name)) for name in self.available()]


def _same_class(a: object, b: object) -> bool:
    # a module imported twice under two names (``tests.x`` and ``x``) defines the class twice
    return isinstance(a, type) and isinstance(b, type) and a.__qualname__ == b.__qualname__


def _describe(entry: object) -> str:
    if isinstance(entry, type):
        return f"{entry.__module__}.{entry.__qualname__}"
    return repr(entry)
