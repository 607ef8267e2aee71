"""The plugin author kit: the conformance checks every built-in component passes.

Run them from a plugin's own test suite::

    from breastcls.testing import check_backbone
    from my_plugin import build_resnet50

    def test_resnet50_conforms(tmp_path):
        check_backbone(KerasBackbone(factory=build_resnet50, preprocessing="caffe"),
                       work_dir=tmp_path)

and load the pytest fixtures with ``pytest_plugins = ["breastcls.testing.fixtures"]``.
Each check raises :class:`ConformanceError` (an ``AssertionError``) naming what is wrong, and
returns a small report of what it measured. Checks build networks at small sizes with
``weights=None``: they need no network access and run on a CPU.
"""

from __future__ import annotations

from breastcls.testing.checks import (
    BackboneReport,
    ConformanceError,
    check_augmentation,
    check_backbone,
    check_component,
    check_dataset_format,
    check_head,
    check_metric,
    check_trainer,
    check_tta,
    isolated_host,
    synthetic_predictions,
)

__all__ = [
    "BackboneReport",
    "ConformanceError",
    "check_augmentation",
    "check_backbone",
    "check_component",
    "check_dataset_format",
    "check_head",
    "check_metric",
    "check_trainer",
    "check_tta",
    "isolated_host",
    "synthetic_predictions",
]
