"""The plugin passes breastcls' conformance checks and is found through its entry point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import breastcls_resnet50

from breastcls import KerasBackbone
from breastcls.plugins import PluginHost
from breastcls.testing import check_backbone

pytest_plugins = ["breastcls.testing.fixtures"]


def test_resnet50_conforms(tmp_path: Path) -> None:
    backbone = KerasBackbone(factory=breastcls_resnet50.build_resnet50, preprocessing="caffe")
    report = check_backbone(backbone, image_size=32, work_dir=tmp_path)
    assert report.feature_shape == (1, 1, 2048)
    assert report.params == 23_587_712  # ResNet50 without its top, as Keras documents it


def test_resnet50_registers_under_its_id(make_plugin_host: Callable[..., PluginHost]) -> None:
    host = make_plugin_host(("resnet50", breastcls_resnet50))
    info = host.backbones.info("resnet50")
    assert info.plugin == "resnet50"
    assert info.component.preprocessing == "caffe"


def test_resnet50_is_found_through_the_entry_point() -> None:
    assert "resnet50" in PluginHost().backbones
