"""The plugin host: one pluggy manager, the entry-point group ``breastcls``, and the registries.

Environment variables:
    BREASTCLS_DISABLE_PLUGINS: comma-separated plugin (entry point) names not to load.
    BREASTCLS_TRACE_HOOKS: when set to a non-empty value, every hook call is written to stderr.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pluggy

from breastcls.errors import PluginError
from breastcls.interfaces import (
    TTA,
    Augmentation,
    Backbone,
    DatasetFormat,
    Head,
    Metric,
    SlideReader,
    StainNormaliser,
    Trainer,
)
from breastcls.plugins import hookspecs
from breastcls.registry import ComponentInfo, Registry

__all__ = ["ENTRY_POINT_GROUP", "PluginHost", "default_host", "hookimpl"]

ENTRY_POINT_GROUP = "breastcls"
hookimpl = pluggy.HookimplMarker("breastcls")
"""Decorator marking a plugin's hook implementations."""

_REGISTRATION_HOOKS = {
    "backbone": "breastcls_register_backbones",
    "head": "breastcls_register_heads",
    "augmentation": "breastcls_register_augmentations",
    "trainer": "breastcls_register_trainers",
    "metric": "breastcls_register_metrics",
    "dataset": "breastcls_register_datasets",
    "tta": "breastcls_register_tta",
    "slide_reader": "breastcls_register_slide_readers",
    "stain_normaliser": "breastcls_register_stain_normalisers",
}


class PluginHost:
    """Loads plugins and holds the registries they fill.

    Each host is independent: tests build their own, and nothing is global except the lazily
    built :func:`default_host`.

    Args:
        plugins: Extra plugin objects (modules or instances with ``@hookimpl`` functions), as
            ``(name, plugin)`` pairs, registered after the entry points.
        entry_points: Load every installed plugin of the ``breastcls`` entry-point group.
        disabled: Plugin names not to load; defaults to ``BREASTCLS_DISABLE_PLUGINS``.
        trace: Write every hook call to stderr; defaults to ``BREASTCLS_TRACE_HOOKS``.

    Raises:
        PluginError: A plugin fails to import, implements an unknown hook, or its registration
            hook raises.
        DuplicateComponentError: Two plugins register the same id.
    """

    def __init__(
        self,
        *,
        plugins: Iterable[tuple[str, object]] = (),
        entry_points: bool = True,
        disabled: Iterable[str] | None = None,
        trace: bool | None = None,
    ) -> None:
        if disabled is None:
            disabled = _split_env(os.environ.get("BREASTCLS_DISABLE_PLUGINS", ""))
        if trace is None:
            trace = bool(os.environ.get("BREASTCLS_TRACE_HOOKS"))
        self.disabled = frozenset(disabled)
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        for name in self.disabled:
            self.manager.set_blocked(name)
        if trace:
            self.manager.trace.root.setwriter(lambda message: sys.stderr.write(message))
            self.manager.enable_tracing()
        if entry_points:
            try:
                self.manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            except Exception as error:
                raise PluginError(
                    f"A breastcls plugin failed to load: {type(error).__name__}: {error}. "
                    "Reinstall or disable it (BREASTCLS_DISABLE_PLUGINS=name)."
                ) from error
        for name, plugin in plugins:
            if name not in self.disabled:
                self.manager.register(plugin, name=name)
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            raise PluginError(f"{error}. Hook names must be among breastcls' hookspecs.") from error

        self.backbones: Registry[Backbone] = Registry("backbone")
        self.heads: Registry[Head] = Registry("head")
        self.augmentations: Registry[Augmentation] = Registry("augmentation")
        self.trainers: Registry[Trainer] = Registry("trainer")
        self.metrics: Registry[Metric] = Registry("metric")
        self.datasets: Registry[DatasetFormat] = Registry("dataset")
        self.tta: Registry[TTA] = Registry("tta")
        self.slide_readers: Registry[SlideReader] = Registry("slide_reader")
        self.stain_normalisers: Registry[StainNormaliser] = Registry("stain_normaliser")
        for kind, hook_name in _REGISTRATION_HOOKS.items():
            self._fill(self.registry(kind), hook_name)

    def registry(self, kind: str) -> Registry[Any]:
        """Return the registry of one component kind (``backbone``, ``head``...)."""
        registries: dict[str, Registry[Any]] = {
            "backbone": self.backbones,
            "head": self.heads,
            "augmentation": self.augmentations,
            "trainer": self.trainers,
            "metric": self.metrics,
            "dataset": self.datasets,
            "tta": self.tta,
            "slide_reader": self.slide_readers,
            "stain_normaliser": self.stain_normalisers,
        }
        return registries[kind]

    def components(self) -> Iterator[ComponentInfo[Any]]:
        """Yield every registered component, kind by kind."""
        for kind in _REGISTRATION_HOOKS:
            yield from self.registry(kind)

    def plugin_names(self) -> list[str]:
        """Return the names of the loaded plugins, sorted."""
        return sorted(
            name for name, plugin in self.manager.list_name_plugin() if plugin is not None
        )

    def distribution_of(self, plugin_name: str) -> str:
        """Return ``package version`` of the distribution that installed a plugin, or ``-``."""
        for plugin, dist in self.manager.list_plugin_distinfo():
            if self.manager.get_name(plugin) == plugin_name:
                return f"{dist.project_name} {dist.version}"
        return "-"

    # Lifecycle hooks: thin typed wrappers so callers never touch pluggy directly.
    def train_start(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        """Call every ``breastcls_train_start`` implementation."""
        self.manager.hook.breastcls_train_start(run_dir=run_dir, config=config)

    def epoch_end(self, run_dir: Path, epoch: int, logs: Mapping[str, float]) -> None:
        """Call every ``breastcls_epoch_end`` implementation."""
        self.manager.hook.breastcls_epoch_end(run_dir=run_dir, epoch=epoch, logs=logs)

    def train_end(self, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """Call every ``breastcls_train_end`` implementation."""
        self.manager.hook.breastcls_train_end(run_dir=run_dir, metrics=metrics)

    def _fill(self, registry: Registry[Any], hook_name: str) -> None:
        # Each plugin is called on its own with a registry scoped to it, so every component
        # records the plugin it came from and a duplicate id can name both plugins.
        plugins = [plugin for _, plugin in self.manager.list_name_plugin() if plugin is not None]
        for plugin in plugins:
            callers = self.manager.get_hookcallers(plugin) or []
            if not any(caller.name == hook_name for caller in callers):
                continue
            name = self.manager.get_name(plugin) or repr(plugin)
            others = [other for other in plugins if other is not plugin]
            caller = self.manager.subset_hook_caller(hook_name, remove_plugins=others)
            try:
                caller(registry=registry.scoped(name))
            except (PluginError, LookupError, ValueError):
                raise
            except Exception as error:
                raise PluginError(
                    f"Plugin {name!r} failed in {hook_name}: {type(error).__name__}: {error}."
                ) from error


def _split_env(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@functools.cache
def default_host() -> PluginHost:
    """Return the process-wide host with every installed plugin (built once, on first use)."""
    return PluginHost()


def ensure_host(host: PluginHost | None) -> PluginHost:
    """Return ``host``, or the default host when ``None``."""
    return host if host is not None else default_host()
