"""The plugin host: one pluggy manager, the entry-point group ``breastcls``, and the registries.

Environment variables:
    BREASTCLS_DISABLE_PLUGINS: comma-separated plugin (entry point) names not to load.
    BREASTCLS_TRACE_HOOKS: when set to a non-empty value, every hook call is written to stderr.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pluggy

from breastcls.errors import BreastclsError, ObserverError, PluginError
from breastcls.interfaces import (
    TTA,
    Augmentation,
    Backbone,
    DatasetFormat,
    Head,
    Metric,
    SlideReader,
    StainNormaliser,
    TissueDetector,
    Trainer,
)
from breastcls.plugins import hookspecs
from breastcls.records import ConfigRecord, EpochRecord, MetricsRecord
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
    "tissue_detector": "breastcls_register_tissue_detectors",
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
        skip_broken: Leave out a plugin that fails to import and carry on after a registration
            hook that raises, recording each message in :attr:`broken` (``breastcls plugins``
            lists the rest); by default the first failure is raised.

    Raises:
        PluginError: A plugin fails to import, implements an unknown hook, or its registration
            hook raises; the message names the plugin (and the hook).
        DuplicateComponentError: Two plugins register the same id.
    """

    def __init__(
        self,
        *,
        plugins: Iterable[tuple[str, object]] = (),
        entry_points: bool = True,
        disabled: Iterable[str] | None = None,
        trace: bool | None = None,
        skip_broken: bool = False,
    ) -> None:
        if disabled is None:
            disabled = _split_env(os.environ.get("BREASTCLS_DISABLE_PLUGINS", ""))
        if trace is None:
            trace = bool(os.environ.get("BREASTCLS_TRACE_HOOKS"))
        self.disabled = frozenset(disabled)
        self.skip_broken = skip_broken
        self.broken: list[str] = []
        """One message per plugin left out or hook that failed (with ``skip_broken``)."""
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        for name in self.disabled:
            self.manager.set_blocked(name)
        if trace:
            self.manager.trace.root.setwriter(lambda message: sys.stderr.write(message))
            self.manager.enable_tracing()
        if entry_points:
            self._load_entry_points()
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
        self.tissue_detectors: Registry[TissueDetector] = Registry("tissue_detector")
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
            "tissue_detector": self.tissue_detectors,
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
    def train_start(self, run_dir: Path, config: ConfigRecord) -> None:
        """Call every ``breastcls_train_start`` implementation.

        Raises:
            PluginError: One raised (named, with the hook).
        """
        self._observe("breastcls_train_start", run_dir=run_dir, config=config)

    def epoch_end(self, run_dir: Path, epoch: int, logs: EpochRecord) -> None:
        """Call every ``breastcls_epoch_end`` implementation.

        Raises:
            PluginError: One raised (named, with the hook).
        """
        self._observe("breastcls_epoch_end", run_dir=run_dir, epoch=epoch, logs=logs)

    def train_end(self, run_dir: Path, metrics: MetricsRecord) -> None:
        """Call every ``breastcls_train_end`` implementation, each even when another fails.

        Raises:
            ObserverError: One or more raised (each named, with the hook); the run they
                observe is finished all the same.
        """
        failures = self._observe(
            "breastcls_train_end", stop_at_first=False, run_dir=run_dir, metrics=metrics
        )
        if failures:
            raise ObserverError(
                f"{' '.join(failures)} The run itself finished: {run_dir}. Fix or disable the "
                "plugin (BREASTCLS_DISABLE_PLUGINS=name)."
            )

    def _implementers(self, hook_name: str) -> Iterator[tuple[str, Any]]:
        """Each plugin implementing ``hook_name``, with a caller that calls only that plugin."""
        plugins = [plugin for _, plugin in self.manager.list_name_plugin() if plugin is not None]
        for plugin in plugins:
            callers = self.manager.get_hookcallers(plugin) or []
            if not any(caller.name == hook_name for caller in callers):
                continue
            others = [other for other in plugins if other is not plugin]
            name = self.manager.get_name(plugin) or repr(plugin)
            yield name, self.manager.subset_hook_caller(hook_name, remove_plugins=others)

    def _observe(self, hook_name: str, *, stop_at_first: bool = True, **kwargs: Any) -> list[str]:
        """Call each plugin's ``hook_name``; return (or raise) what failed, naming the plugin."""
        failures = []
        for name, caller in self._implementers(hook_name):
            try:
                caller(**kwargs)
            except Exception as error:
                failure = _failure(name, hook_name, error)
                if stop_at_first:
                    raise PluginError(failure) from error
                failures.append(failure)
        return failures

    def _fill(self, registry: Registry[Any], hook_name: str) -> None:
        # Each plugin is called on its own with a registry scoped to it, so every component
        # records the plugin it came from and a duplicate id can name both plugins.
        for name, caller in self._implementers(hook_name):
            try:
                caller(registry=registry.scoped(name))
            except BreastclsError as error:
                self._broken(error, error)
            except Exception as error:
                self._broken(PluginError(_failure(name, hook_name, error)), error)

    def _broken(self, problem: BreastclsError, cause: BaseException) -> None:
        """Raise ``problem``, or record it and go on with ``skip_broken``."""
        if not self.skip_broken:
            if problem is cause:
                raise problem
            raise problem from cause
        self.broken.append(str(problem))

    def _load_entry_points(self) -> None:
        # pluggy stops at the first entry point that fails, without naming it: find it, and
        # with skip_broken block it and load the others again.
        while True:
            try:
                self.manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
                return
            except Exception as error:
                culprit = self._failing_entry_point()
                what = f"{culprit.name!r} ({culprit.value})" if culprit else "(unknown)"
                problem = PluginError(
                    f"The breastcls plugin {what} failed to load: {type(error).__name__}: "
                    f"{error}. Reinstall it, or disable it with BREASTCLS_DISABLE_PLUGINS="
                    f"{culprit.name if culprit else 'name'}."
                )
                if culprit is None:
                    raise problem from error
                self._broken(problem, error)
                self.manager.set_blocked(culprit.name)

    def _failing_entry_point(self) -> importlib.metadata.EntryPoint | None:
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if self.manager.is_blocked(entry.name) or self.manager.get_plugin(entry.name):
                continue
            try:
                entry.load()
            except Exception:
                return entry
        return None


def _failure(plugin: str, hook_name: str, error: BaseException) -> str:
    return f"Plugin {plugin!r} failed in {hook_name}: {type(error).__name__}: {error}."


def _split_env(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@functools.cache
def default_host() -> PluginHost:
    """Return the process-wide host with every installed plugin (built once, on first use)."""
    return PluginHost()


def ensure_host(host: PluginHost | None) -> PluginHost:
    """Return ``host``, or the default host when ``None``."""
    return host if host is not None else default_host()
