"""Every hook breastcls calls. This module is the only place hooks are defined.

Registration hooks are called once per plugin, when a :class:`~breastcls.plugins.PluginHost`
loads, with a registry scoped to that plugin. Lifecycle hooks observe a training run; they never
change it. A hook may gain parameters in later versions, never lose or rename one.
"""

from __future__ import annotations

from pathlib import Path

import pluggy

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
from breastcls.records import ConfigRecord, EpochRecord, MetricsRecord
from breastcls.registry import PluginRegistry

hookspec = pluggy.HookspecMarker("breastcls")


@hookspec
def breastcls_register_backbones(registry: PluginRegistry[Backbone]) -> None:
    """Register backbones (feature extractors).

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, backbone, summary=...)`` for each backbone it provides, usually with a
    :class:`~breastcls.KerasBackbone`.

    Since: 0.1.0
    """


@hookspec
def breastcls_register_heads(registry: PluginRegistry[Head]) -> None:
    """Register classification heads.

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, head, summary=...)``.

    Since: 0.1.0
    """


@hookspec
def breastcls_register_augmentations(registry: PluginRegistry[Augmentation]) -> None:
    """Register training-time augmentations.

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, augmentation, summary=...)``.

    Since: 0.1.0
    """


@hookspec
def breastcls_register_trainers(registry: PluginRegistry[Trainer]) -> None:
    """Register trainers.

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, trainer, summary=...)``.

    Since: 0.1.0
    """


@hookspec
def breastcls_register_metrics(registry: PluginRegistry[Metric]) -> None:
    """Register metrics: each contributes a section to ``metrics.json`` and the report.

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, metric, summary=...)``; every registered metric runs on every evaluation.

    Since: 0.1.0
    """


@hookspec
def breastcls_register_datasets(registry: PluginRegistry[DatasetFormat]) -> None:
    """Register dataset formats (folder trees, manifests...).

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, dataset_format, summary=...)``.

    Since: 0.1.0
    """


@hookspec
def breastcls_register_tta(registry: PluginRegistry[TTA]) -> None:
    """Register test-time augmentations (the copies of each image whose predictions are averaged).

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, tta, summary=...)`` with a :class:`~breastcls.interfaces.TTA`; users pick
    one by id (``breastcls evaluate --tta d8``).

    Since: 0.1.0
    """


@hookspec
def breastcls_register_slide_readers(registry: PluginRegistry[SlideReader]) -> None:
    """Register slide readers (whole-slide image formats: pyramidal TIFF, OpenSlide, DICOM...).

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, reader, summary=...)`` with a :class:`~breastcls.interfaces.SlideReader`;
    ``breastcls slide predict`` opens each slide with the first reader (by id) that accepts it,
    or the one named by ``--reader``.

    Since: 0.2.0
    """


@hookspec
def breastcls_register_stain_normalisers(registry: PluginRegistry[StainNormaliser]) -> None:
    """Register stain normalisers (Reinhard, Macenko...): a preprocessing step inside the model.

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, normaliser, summary=...)`` with a
    :class:`~breastcls.interfaces.StainNormaliser`; ``breastcls train --stain-normalisation ID``
    fits it to the training images (or ``--stain-reference``) and puts its layer into the model.

    Since: 0.2.0
    """


@hookspec
def breastcls_register_tissue_detectors(registry: PluginRegistry[TissueDetector]) -> None:
    """Register tissue detectors: what of a slide's thumbnail is tissue (not glass, pen or dust).

    Called once per plugin when the plugin host loads. An implementation calls
    ``registry.add(id, detector, summary=...)`` with a
    :class:`~breastcls.interfaces.TissueDetector`; ``breastcls slide predict --tissue-detector
    ID`` picks one (default ``optical-density``).

    Since: 0.2.0
    """


@hookspec
def breastcls_train_start(run_dir: Path, config: ConfigRecord) -> None:
    """Observe the start of training.

    Called once, after the run folder and its ``config.json`` exist and before the first epoch,
    with ``config.json`` as read back: :attr:`~breastcls.records.ConfigRecord.run_config` is the
    :class:`~breastcls.config.RunConfig`, beside it the split, devices and precision.
    Implementations may log or forward the configuration; they must not change the run.

    Since: 0.1.0 (a :class:`~breastcls.records.ConfigRecord` since 0.2.0; a mapping before)
    """


@hookspec
def breastcls_epoch_end(run_dir: Path, epoch: int, logs: EpochRecord) -> None:
    """Observe the end of an epoch.

    Called after every epoch with its zero-based index and the epoch's values as an
    :class:`~breastcls.records.EpochRecord` (``logs.val_accuracy``...; also a mapping of every
    logged value: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``...).

    Since: 0.1.0 (an :class:`~breastcls.records.EpochRecord` since 0.2.0)
    """


@hookspec
def breastcls_train_end(run_dir: Path, metrics: MetricsRecord) -> None:
    """Observe the end of a successful run.

    Called once, after the run folder is complete, with its ``metrics.json`` as a
    :class:`~breastcls.records.MetricsRecord` (``metrics.evaluated_on.set`` names the set the
    figures come from; ``metrics.section("classification")`` or ``metrics["classification"]``
    a metric's values).

    Since: 0.1.0 (a :class:`~breastcls.records.MetricsRecord` since 0.2.0)
    """
