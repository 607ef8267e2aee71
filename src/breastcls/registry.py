"""One generic registry of named components, filled by plugins."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from breastcls.errors import ConfigError, DuplicateComponentError, UnknownComponentError

__all__ = ["ComponentInfo", "PluginRegistry", "Registry"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentInfo(Generic[T]):
    """A registered component and where it came from.

    Attributes:
        kind: ``backbone``, ``head``, ``augmentation``, ``trainer``, ``metric``, ``dataset`` or
            ``tta``.
        name: The id users pass (``densenet201``).
        summary: One line shown by ``breastcls plugins``.
        plugin: Name of the plugin (entry point) that registered it.
        component: The component itself.
    """

    kind: str
    name: str
    summary: str
    plugin: str
    component: T


class Registry(Generic[T]):
    """Components of one kind, looked up by id."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, ComponentInfo[T]] = {}

    def add(self, name: str, component: T, *, summary: str, plugin: str) -> None:
        """Register ``component`` under ``name``.

        Raises:
            ConfigError: The id is not a lowercase identifier.
            DuplicateComponentError: Another plugin already registered ``name``.
        """
        if not name or name != name.strip().lower() or " " in name:
            raise ConfigError(
                f"Plugin {plugin!r} registered the {self.kind} id {name!r}: ids must be non-empty, "
                "lowercase and without spaces."
            )
        if name in self._items:
            other = self._items[name].plugin
            raise DuplicateComponentError(
                f"The {self.kind} id {name!r} is registered by both plugin {other!r} and plugin "
                f"{plugin!r}: uninstall or disable one (BREASTCLS_DISABLE_PLUGINS={plugin})."
            )
        self._items[name] = ComponentInfo(
            kind=self.kind, name=name, summary=summary, plugin=plugin, component=component
        )

    def info(self, name: str) -> ComponentInfo[T]:
        """Return the registration of ``name``.

        Raises:
            UnknownComponentError: No component has that id; the message lists the known ids
                and the closest matches.
        """
        try:
            return self._items[name]
        except KeyError:
            known = sorted(self._items)
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownComponentError(
                f"Unknown {self.kind} {name!r}.{hint} Known {self.kind}s: "
                f"{', '.join(known) or '(none)'}. Run `breastcls plugins` to list every component, "
                "or install the plugin that provides it."
            ) from None

    def get(self, name: str) -> T:
        """Return the component registered as ``name`` (see :meth:`info` for errors)."""
        return self.info(name).component

    def names(self) -> list[str]:
        """Return the registered ids, sorted."""
        return sorted(self._items)

    def __iter__(self) -> Iterator[ComponentInfo[T]]:
        return iter(self._items[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def scoped(self, plugin: str) -> PluginRegistry[T]:
        """Return the view handed to one plugin's hook: every addition is attributed to it."""
        return PluginRegistry(self, plugin)


class PluginRegistry(Generic[T]):
    """What a plugin's ``breastcls_register_*`` hook receives."""

    def __init__(self, registry: Registry[T], plugin: str) -> None:
        self._registry = registry
        self.plugin = plugin

    @property
    def kind(self) -> str:
        """The kind of component this registry holds."""
        return self._registry.kind

    def add(self, name: str, component: T, *, summary: str) -> None:
        """Register ``component`` as ``name`` with a one-line ``summary``."""
        self._registry.add(name, component, summary=summary, plugin=self.plugin)
