"""The plugin host: built-ins arrive through entry points like any third party's plugin."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

import breastcls
from breastcls import DuplicateComponentError, PluginError, hookimpl
from breastcls.plugins import PluginHost

BUILTIN_IDS = {
    "backbone": {"densenet201", "mobilenetv3small", "efficientnetb0", "smallcnn"},
    "head": {"seed"},
    "augmentation": {"default", "seed", "none"},
    "trainer": {"keras"},
    "metric": {"classification", "confusion_matrix"},
    "dataset": {"folder", "manifest"},
}


def test_builtins_are_registered_through_the_entry_point_group() -> None:
    host = PluginHost()
    for kind, ids in BUILTIN_IDS.items():
        registered = {info.name: info for info in host.registry(kind)}
        assert ids <= set(registered), kind
        for name in ids:
            assert registered[name].plugin.startswith("builtin_")
    assert host.distribution_of("builtin_backbones").startswith("breastcls ")


def test_no_entry_points_means_no_components() -> None:
    assert len(PluginHost(entry_points=False).backbones) == 0


class _ThirdParty:
    @hookimpl
    def breastcls_register_backbones(self, registry: breastcls.PluginRegistry[object]) -> None:
        registry.add(
            "tinynet",
            breastcls.KerasBackbone(factory=lambda *, input_shape, weights: None),
            summary="a test backbone",
        )


def test_an_extra_plugin_registers_beside_the_builtins() -> None:
    host = PluginHost(plugins=[("third_party", _ThirdParty())])
    info = host.backbones.info("tinynet")
    assert info.plugin == "third_party"
    assert "densenet201" in host.backbones


def test_a_duplicate_id_from_another_plugin_names_both() -> None:
    class Clash:
        @hookimpl
        def breastcls_register_heads(self, registry: breastcls.PluginRegistry[object]) -> None:
            registry.add("seed", object(), summary="clash")

    with pytest.raises(DuplicateComponentError, match="'builtin_heads' and plugin 'clash'"):
        PluginHost(plugins=[("clash", Clash())])


def test_an_unknown_hook_name_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def breastcls_register_backbone(self, registry: object) -> None:  # missing "s"
            pass

    with pytest.raises(PluginError, match="breastcls_register_backbone"):
        PluginHost(plugins=[("typo", Typo())])


def test_a_failing_plugin_is_named() -> None:
    class Broken:
        @hookimpl
        def breastcls_register_trainers(self, registry: object) -> None:
            raise RuntimeError("boom")

    with pytest.raises(PluginError, match="Plugin 'broken' failed in breastcls_register_trainers"):
        PluginHost(plugins=[("broken", Broken())])


def test_plugins_can_be_disabled_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREASTCLS_DISABLE_PLUGINS", "builtin_backbones, builtin_heads")
    host = PluginHost()
    assert len(host.backbones) == 0 and len(host.heads) == 0
    assert "keras" in host.trainers


def test_lifecycle_hooks_reach_plugins(tmp_path: object) -> None:
    seen: list[tuple[str, object]] = []
    observer = SimpleNamespace(
        breastcls_epoch_end=hookimpl(lambda run_dir, epoch, logs: seen.append(("epoch", epoch)))
    )
    host = PluginHost(entry_points=False, plugins=[("observer", observer)])
    host.epoch_end(tmp_path, 3, {"loss": 0.5})  # type: ignore[arg-type]
    assert seen == [("epoch", 3)]


def test_importing_breastcls_does_not_import_tensorflow() -> None:
    code = (
        "import sys, breastcls; from breastcls.plugins import PluginHost; PluginHost(); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
