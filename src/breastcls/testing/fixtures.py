"""pytest fixtures for plugin authors: load them with
``pytest_plugins = ["breastcls.testing.fixtures"]`` in a ``conftest.py``.

Fixtures:
    breastcls_host: A plugin host with breastcls' built-ins only (no installed plugin).
    make_plugin_host: A factory: ``make_plugin_host(("my_plugin", my_module))`` returns an
        isolated host with the built-ins and the given plugins.
    tiny_image_folder: A small synthetic two-class folder dataset (``root/<class>/*.png``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from breastcls.plugins.host import PluginHost
from breastcls.testing.checks import isolated_host

__all__ = ["breastcls_host", "make_plugin_host", "tiny_image_folder"]


@pytest.fixture()
def breastcls_host() -> PluginHost:
    """A fresh host with breastcls' built-in plugins only."""
    return isolated_host()


@pytest.fixture()
def make_plugin_host() -> Callable[..., PluginHost]:
    """Return :func:`breastcls.testing.isolated_host`: build a host from given plugins."""
    return isolated_host


@pytest.fixture()
def tiny_image_folder(tmp_path: Path) -> Path:
    """Eight synthetic 48-pixel images per class in ``benign/`` and ``malignant/``."""
    from breastcls.data.demo import make_demo_dataset

    return make_demo_dataset(tmp_path / "tiny-images", per_class=8, size=48)
