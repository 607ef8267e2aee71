"""The plugin host: hook specifications and the pluggy manager that loads plugins."""

from breastcls.plugins.host import PluginHost, default_host, hookimpl

__all__ = ["PluginHost", "default_host", "hookimpl"]
