"""One generic registry of named components, filled by plugins."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from breastcls.errors import ConfigError, DuplicateComponentError, UnknownComponentError

__all__ = ["ComponentInfo", "PluginRegistry", "Registry"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentInfo(Generic[T]):
    """A registered component and where it came from.

    Attributes:
        kind: ``backbone``, ``head``, ``augmentation``, ``trainer``, ``metric``, ``dataset``,
            ``tta``, ``slide_reader``, ``stain_normaliser`` or ``tissue_detector``.
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

    def get(self, name: str, options: Mapping[str, Any] | None = None) -> T:
        """Return the component registered as ``name``, with ``options`` set.

        A component takes options when it is a dataclass (as timm's ``create_model(name,
        **kwargs)`` or scikit-learn's ``set_params``): each option replaces the field of that
        name, and the dataclass validates it. Text values (from the command line) are converted
        to the field's type.

        Raises:
            UnknownComponentError: No component has that id (see :meth:`info`).
            ConfigError: An option the component does not have, a value of the wrong type, or
                options for a component that takes none.
        """
        component = self.info(name).component
        if not options:
            return component
        if not dataclasses.is_dataclass(component) or isinstance(component, type):
            raise ConfigError(
                f"The {self.kind} {name!r} takes no options (got {', '.join(sorted(options))})."
            )
        return dataclasses.replace(
            component, **_converted(component, options, f"{self.kind} {name!r}")
        )

    def option_defaults(self, name: str) -> dict[str, Any]:
        """The options the component ``name`` takes, with their current values."""
        component = self.info(name).component
        if not dataclasses.is_dataclass(component) or isinstance(component, type):
            return {}
        return {f.name: getattr(component, f.name) for f in dataclasses.fields(component)}

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


def _converted(component: Any, options: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``options`` checked against the component's fields, text converted to their types."""
    fields = {f.name: f for f in dataclasses.fields(component)}
    hints = typing.get_type_hints(type(component))
    converted: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"The {what} has no option {key!r}.{hint} Its options: "
                f"{', '.join(f'{k}={getattr(component, k)!r}' for k in fields) or '(none)'}."
            )
        converted[key] = _as_type(value, hints.get(key), f"{what} option {key}")
    return converted


def _as_type(value: Any, hint: Any, what: str) -> Any:
    """Convert a text ``value`` to ``hint`` (int, float, bool or str); others pass as they are."""
    if not isinstance(value, str) or hint in (str, None):
        return value
    try:
        if hint is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if hint in (int, float):
            return hint(value)
    except ValueError:
        raise ConfigError(f"{what}={value!r} is not a {hint.__name__}.") from None
    return value
