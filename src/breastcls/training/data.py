"""The data stage of a training run: the dataset loaded and decoded once (:func:`scan_data`),
split into its roles and checked (:func:`prepare_data`), the class weights, the check that a
resumed run's data is still its own, and the batches the fit stage trains on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.config import DataConfig, RunConfig
from breastcls.data.check import DataReport, check_dataset
from breastcls.data.images import ImageInfo, describe_unreadable, scan_samples
from breastcls.data.loading import load_dataset
from breastcls.data.overlap import SeenImage, find_overlap
from breastcls.data.split import Split, split_for_config
from breastcls.embeddings.probe import frozen_extractor
from breastcls.errors import DataError
from breastcls.interfaces import Dataset, Sample, SkippedFile
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.folder import RunFolder, read_split_csv
from breastcls.training.checks import check_backbone_output, check_training_memory
from breastcls.training.distribute import distribute_dataset, worker_role

__all__ = [
    "PreparedData",
    "ScannedData",
    "balanced_class_weights",
    "check_same_data",
    "check_split",
    "prepare_data",
    "scan_data",
    "training_datasets",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PreparedData:
    """A dataset checked and split, ready for training."""

    class_names: tuple[str, ...]
    split: Split
    image_info: dict[Path, ImageInfo]
    skipped: tuple[SkippedFile, ...]
    bad: tuple[SkippedFile, ...]
    data_check: DataReport | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScannedData:
    """A dataset loaded and decoded once, before it is split: every fold of a cross-validation
    reuses it.

    Attributes:
        dataset: The dataset as its format read it.
        samples: Its readable images.
        image_info: What decoding each readable image found.
        bad: The unreadable images (only with ``skip_bad_images``).
    """

    dataset: Dataset
    samples: tuple[Sample, ...]
    image_info: dict[Path, ImageInfo]
    bad: tuple[SkippedFile, ...]


def scan_data(config: RunConfig, *, host: PluginHost | None = None) -> ScannedData:
    """Load the data of ``config`` and decode every image once.

    Between the two, the backbone is built once and checked (:func:`check_backbone_output`;
    not in a worker of a multi-worker run, whose strategy must come first),
    with the memory a training step needs: after the cheap checks of the data, before the long
    decoding. A frozen extractor's file is opened and checked instead (its input size and
    output), built into nothing.

    Raises:
        DataError: The data is unusable, or holds unreadable images and
            ``config.data.skip_bad_images`` is false (the message lists them).
        PluginError: The backbone does not build one 4-D feature map.
        ConfigError: The batch and image size need more memory than the machine has.
    """
    dataset = load_dataset(config.data, host=host)
    host = ensure_host(host)
    # A worker of a multi-worker run must create its strategy before TensorFlow runs anything
    # (building a model would); its model is built, and checked, under the strategy.
    extractor = frozen_extractor(config.model, host)
    if extractor is not None:
        extractor.load()  # its file, input size and output checked before decoding
    elif worker_role() is None:
        features = check_backbone_output(config.model.backbone, config.data.image_size, host)
        check_training_memory(features, config)
    image_info, bad = scan_samples(dataset.samples)
    if bad and not config.data.skip_bad_images:
        raise DataError(
            f"{dataset.root}: {describe_unreadable(bad)} Fix or remove them, or pass "
            "--skip-bad-images to train without them (they are listed in the run folder)."
        )
    bad_paths = {item.path for item in bad}
    return ScannedData(
        dataset=dataset,
        samples=tuple(s for s in dataset.samples if s.path not in bad_paths),
        image_info=image_info,
        bad=tuple(bad),
    )


def prepare_data(
    config: RunConfig, *, host: PluginHost | None = None, scanned: ScannedData | None = None
) -> PreparedData:
    """Split the data of ``config`` into its roles, after loading and decoding it
    (:func:`scan_data`) unless ``scanned`` already holds it.

    The full :func:`~breastcls.check_data` report (duplicates and patients across the split,
    suspicious files) is kept in ``data_check``; only unreadable files stop training.

    Raises:
        DataError: The data is unusable, holds unreadable images and
            ``config.data.skip_bad_images`` is false, or cannot be split.
    """
    scanned = scanned or scan_data(config, host=host)
    split = split_for_config(scanned.samples, config.data)
    check_split(split, scanned.image_info, config.data)
    return PreparedData(
        class_names=scanned.dataset.class_names,
        split=split,
        image_info=scanned.image_info,
        skipped=scanned.dataset.skipped,
        bad=scanned.bad,
        data_check=check_dataset(
            scanned.dataset, config.data, image_info=scanned.image_info, unreadable=scanned.bad
        ),
    )


def check_split(split: Split, image_info: Mapping[Path, ImageInfo], data: DataConfig) -> None:
    """Refuse a split that cannot be scored honestly: a test image whose pixels are in the
    training or selection set under another name, or nearly so (a re-saved or slightly cropped
    copy, :mod:`breastcls.data.perceptual`; the split itself already holds every class
    in every role, and no group in two).

    Raises:
        DataError: Listing the duplicated images.
    """
    seen = [
        SeenImage(
            path=str(s.path), role=role, group=None, pixel_sha1=info.pixel_sha1, dhash=info.dhash
        )
        for role, part in split.parts()[:2]
        for s in part
        if (info := image_info.get(s.path)) is not None
    ]
    overlap = find_overlap(seen, split.test, image_info)
    if overlap and not data.allow_leaky_split:
        raise DataError(
            f"{overlap.describe()} Test figures would be inflated: remove the duplicates "
            "(`breastcls data check` lists them), or pass --allow-leaky-split (recorded as leaky)."
        )


def balanced_class_weights(
    samples: Sequence[Sample], class_names: Sequence[str]
) -> dict[int, float]:
    """Return ``n_samples / (n_classes * n_class)`` per class index (scikit-learn's
    ``compute_class_weight("balanced")``)."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([s.label for s in samples])
    weights = compute_class_weight("balanced", classes=np.array(class_names), y=labels)
    return {i: float(w) for i, w in enumerate(weights)}


def check_same_data(run_dir: Path, data: PreparedData) -> None:
    """Refuse data that is no longer the run's own: other class names, or other images or
    roles than its ``split.csv`` records.

    Raises:
        DataError: Saying which, and what to do.
    """
    trained = RunFolder(run_dir).read_class_names()
    if list(trained) != list(data.class_names):
        raise DataError(
            f"The run {run_dir} was trained on classes {list(trained)} but its data now has "
            f"{list(data.class_names)}: restore the data, or start a new run."
        )
    recorded = sorted((str(s.path), str(s.split)) for s, _ in read_split_csv(run_dir))
    current = sorted((str(s.path), role.value) for role, part in data.split.parts() for s in part)
    if recorded != current:
        raise DataError(
            f"The images of {run_dir}'s data or their roles changed since the run started "
            "(split.csv differs): restore the data, or start a new run."
        )


def training_datasets(
    config: RunConfig, data: PreparedData, strategy: Any, epoch_variable: Any
) -> tuple[Any, Any]:
    """The shuffled training batches and the selection batches, distributed over devices."""
    from breastcls.data.pipeline import make_dataset

    def batches(samples: Sequence[Sample], *, training: bool) -> Any:
        dataset = make_dataset(
            samples,
            data.class_names,
            image_size=config.data.image_size,
            batch_size=config.train.batch_size * strategy.num_replicas_in_sync,
            image_info=data.image_info,
            shuffle=training,
            seed=config.train.seed,
            cache=config.data.cache,
            epoch=epoch_variable if training else None,
        )
        return distribute_dataset(dataset, strategy)

    return batches(data.split.train, training=True), batches(data.split.selection, training=False)
