"""The public API's own functions: training as the CLI reports it, listings and the demo
configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.data.demo import make_demo_dataset
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.registry import ComponentInfo
from breastcls.runs.folder import RunResult
from breastcls.training import crossval
from breastcls.training import train as training
from breastcls.training.crossval import CrossValidationResult
from breastcls.training.data import ScannedData

__all__ = [
    "cross_validate",
    "demo_config",
    "list_backbones",
    "list_components",
    "resume",
    "resume_cross_validation",
    "train",
]


def train(
    config: RunConfig,
    *,
    quiet: bool = False,
    host: PluginHost | None = None,
    scanned: ScannedData | None = None,
) -> RunResult:
    """Train a model as ``config`` says, write a complete run folder and return its result.

    The run is :func:`breastcls.training.train.train`'s (the folder it writes, the errors it
    raises); this door reports it as ``breastcls train`` does, on stderr: the start summary,
    a progress bar per epoch on a terminal (none in a notebook log or a pipe), one line per epoch
    with both sets' figures, and no Keras progress bar. A caller's own
    :func:`breastcls.progress.reporting` block is kept.

    Args:
        config: The run configuration.
        quiet: Print nothing (as does ``config.train.verbose=0``).
        host: Plugin host (the default host with every installed plugin when ``None``).
        scanned: The data of ``config``, already loaded and decoded
            (:func:`breastcls.training.train.scan_data`).

    Returns:
        The run's folder, history and metrics (test set, see ``RunResult.role``).
    """
    from breastcls.terminal import printing_progress

    with printing_progress(quiet=quiet or config.train.verbose == 0):
        return training.train(config, host=host, scanned=scanned)


def resume(
    run_dir: Path,
    *,
    quiet: bool = False,
    host: PluginHost | None = None,
    scanned: ScannedData | None = None,
) -> RunResult:
    """Continue a killed or interrupted run (:func:`breastcls.training.train.resume`),
    reported as :func:`train` reports (``quiet=True`` prints nothing)."""
    from breastcls.terminal import printing_progress

    with printing_progress(quiet=quiet):
        return training.resume(run_dir, host=host, scanned=scanned)


def cross_validate(
    config: RunConfig, *, quiet: bool = False, host: PluginHost | None = None
) -> CrossValidationResult:
    """One run per fold, then the aggregate (:func:`breastcls.training.crossval.cross_validate`),
    each fold reported as :func:`train` reports (``quiet=True`` prints nothing)."""
    from breastcls.terminal import printing_progress

    with printing_progress(quiet=quiet or config.train.verbose == 0):
        return crossval.cross_validate(config, host=host)


def resume_cross_validation(
    run_dir: Path, *, quiet: bool = False, host: PluginHost | None = None
) -> CrossValidationResult:
    """Continue a cross-validation run
    (:func:`breastcls.training.crossval.resume_cross_validation`), reported as :func:`train`
    reports (``quiet=True`` prints nothing)."""
    from breastcls.terminal import printing_progress

    with printing_progress(quiet=quiet):
        return crossval.resume_cross_validation(run_dir, host=host)


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
