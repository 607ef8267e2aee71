"""Small conveniences of the public API: listings and the demo configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.data.demo import make_demo_dataset
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.registry import ComponentInfo

__all__ = ["demo_config", "list_backbones", "list_components"]


def list_backbones(*, host: PluginHost | None = None) -> list[str]:
    """Return the ids of every registered backbone, sorted."""
    return ensure_host(host).backbones.names()


def list_components(*, host: PluginHost | None = None) -> list[ComponentInfo[Any]]:
    """Return every registered component (all kinds), with the plugin that registered it."""
    return list(ensure_host(host).components())


def demo_config(out_dir: Path = Path("runs"), *, data_dir: Path | None = None) -> RunConfig:
    """Write the bundled synthetic demo images and return a configuration that trains on them.

    The images are synthetic (see :mod:`breastcls.data.demo`). The configuration trains
    the small CNN from scratch at 96 px for 8 epochs: well under a minute on 2 CPU cores.

    Args:
        out_dir: Parent folder of the run folder.
        data_dir: Where to write the images (default: ``<out_dir>/demo-data``).
    """
    data_path = make_demo_dataset(data_dir or Path(out_dir) / "demo-data")
    return RunConfig(
        data=DataConfig(path=data_path, image_size=96),
        model=ModelConfig(backbone="smallcnn", weights=None),
        train=TrainConfig(epochs=8, batch_size=16, learning_rate=1e-3, verbose=2),
        out_dir=Path(out_dir),
        name=None,
    )
