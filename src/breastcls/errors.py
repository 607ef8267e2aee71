"""Exceptions raised by breastcls.

Every error breastcls raises on bad input derives from :class:`BreastclsError` and also from the
matching built-in exception, so ``except ValueError`` keeps working for callers that do not know
breastcls. Messages name the thing, the value received, what is allowed and what to do.
"""

from __future__ import annotations

__all__ = [
    "BreastclsError",
    "ConfigError",
    "DataError",
    "DuplicateComponentError",
    "FolderInUseError",
    "ModelLoadError",
    "ObserverError",
    "OutputError",
    "PluginError",
    "TrainingError",
    "UnknownComponentError",
]


class BreastclsError(Exception):
    """Base class of every error raised by breastcls."""


class ConfigError(BreastclsError, ValueError):
    """A configuration value is invalid (bad option, impossible combination, missing file)."""


class DataError(BreastclsError, ValueError):
    """A dataset, manifest or image cannot be used as given."""


class UnknownComponentError(BreastclsError, LookupError):
    """No registered component has the requested id."""


class DuplicateComponentError(BreastclsError, ValueError):
    """Two plugins registered a component under the same id."""


class PluginError(BreastclsError, RuntimeError):
    """A plugin failed to load or broke the plugin contract."""


class ObserverError(PluginError):
    """A plugin's observer hook failed after the outcome it observes was recorded (a finished
    run stays finished)."""


class OutputError(BreastclsError, OSError):
    """An output folder or file cannot be written."""


class FolderInUseError(OutputError):
    """Another live process holds the folder (see :mod:`breastcls.runs.lock`)."""


class ModelLoadError(BreastclsError, ValueError):
    """A saved model cannot be loaded safely or does not match the data."""


class TrainingError(BreastclsError, RuntimeError):
    """Training stopped because it could not go on (for example a NaN loss)."""
