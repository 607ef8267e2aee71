"""The pytest fixtures plugin authors load with ``pytest_plugins``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from breastcls import hookimpl
from breastcls.plugins import PluginHost
from breastcls.registry import PluginRegistry
from breastcls.testing import check_dataset_format

pytest_plugins = ["breastcls.testing.fixtures"]


class _Head:
    @hookimpl
    def breastcls_register_heads(self, registry: PluginRegistry[object]) -> None:
        registry.add("other", object(), summary="a head")


def test_breastcls_host_has_the_builtins_only(breastcls_host: PluginHost) -> None:
    assert {"densenet201", "smallcnn"} <= set(breastcls_host.backbones.names())
    assert all(name.startswith("builtin_") for name in breastcls_host.plugin_names())


def test_make_plugin_host_adds_a_plugin(make_plugin_host: Callable[..., PluginHost]) -> None:
    host = make_plugin_host(("mine", _Head()))
    assert host.heads.info("other").plugin == "mine"
    assert "seed" in host.heads
    assert make_plugin_host(("mine", _Head()), builtins=False).heads.names() == ["other"]


def test_tiny_image_folder_is_a_valid_folder_dataset(
    tiny_image_folder: Path, breastcls_host: PluginHost
) -> None:
    dataset = check_dataset_format(breastcls_host.datasets.get("folder"), tiny_image_folder)
    assert dataset.class_names == ("benign", "malignant")
    assert len(dataset.samples) == 16
