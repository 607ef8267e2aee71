"""Robustness to stain shifts: the evaluated set re-scored under controlled HED perturbations.

Every image's haematoxylin, eosin and DAB amounts (Ruifrok–Johnston colour deconvolution,
:func:`breastcls.layers.adjust_hed`) are scaled and shifted by a fixed, seeded draw, at
increasing strengths ``s``: at strength ``s`` an image's amounts are multiplied by
``1 + s·a`` and shifted by ``s·b``, where ``a`` and ``b`` (one per stain) are drawn once per
image from U(-1, 1). The draw depends only on the seed and the image's file name, so every
strength moves an image in the same direction, further at each step, and two models evaluated
on the same images meet the same shifts. Strength 0.05 is the range of the ``hed`` and
``pathology`` augmentations (Tellez et al.'s "HED-light"), 0.2 their "HED-strong".

Given a second reference stain (an image or a folder, ``evaluate --stain-reference``), a second
curve moves every image towards that stain: a stain normaliser (Macenko by default) is fitted to
the reference, each image is normalised to it, and the image is moved a share ``s`` of the way
there in optical density (:func:`breastcls.stain.layer.shift_towards`), ``s`` from 0 to 1.

The run's calibration (temperature and thresholds) is applied unchanged, as a deployed model
would apply it to another laboratory's slides. AUC, accuracy, sensitivity and specificity at each
strength, and their change from strength 0, get class-stratified (patient) bootstrap intervals
from one set of resamples shared by every strength, so the changes are paired.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError
from breastcls.evaluation.clinical import (
    DEFAULT_BOOTSTRAP,
    BootstrapOptions,
    Statistic,
    bootstrap_interval,
    image_statistics,
    stratified_resampling,
)
from breastcls.inference.decision import FloatArray
from breastcls.interfaces import MetricSection, Predictions, Sample
from breastcls.io import printable

if TYPE_CHECKING:
    from breastcls.data.images import ImageInfo
    from breastcls.inference.calibration import Calibration
    from breastcls.inference.model import InferenceModel, Scores
    from breastcls.plugins.host import PluginHost
    from breastcls.stain.fit import StainFit

__all__ = [
    "REFERENCE_FIGURE",
    "REFERENCE_SHIFT_STRENGTHS",
    "ROBUSTNESS_FIGURE",
    "STAIN_SHIFTS",
    "STAIN_SHIFT_STRENGTHS",
    "StainShift",
    "check_stain_shift",
    "reference_shift_section",
    "robustness_section",
    "stain_shift_draws",
]

StainShift = Literal["none", "hed"]
"""What ``evaluate`` re-scores the set under: ``hed`` (HED perturbations) or ``none``."""

STAIN_SHIFTS: tuple[str, ...] = get_args(StainShift)

STAIN_SHIFT_STRENGTHS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
"""The strengths of the curve: unshifted, HED-light, twice it, HED-strong."""

ROBUSTNESS_FIGURE = "robustness.png"
"""The curve :func:`robustness_section` writes."""

REFERENCE_SHIFT_STRENGTHS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The shares of the way towards the reference stain: unshifted to fully normalised."""

REFERENCE_FIGURE = "robustness_reference.png"
"""The curve :func:`reference_shift_section` writes."""

_STATISTICS = ("auc", "accuracy", "sensitivity", "specificity")


def check_stain_shift(value: str) -> StainShift:
    """Return ``value`` as a :data:`StainShift`.

    Raises:
        ConfigError: ``value`` is not one of :data:`STAIN_SHIFTS`.
    """
    if value == "none":
        return "none"
    if value == "hed":
        return "hed"
    raise ConfigError(
        f"Unknown stain shift {value!r}: use one of {', '.join(STAIN_SHIFTS)} (hed re-scores "
        "the set under HED stain perturbations; none leaves the robustness section out)."
    )


def stain_shift_draws(
    paths: Sequence[str], *, seed: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Return each image's unit draws ``(a, b)``, ``(n, 3)`` each, from U(-1, 1).

    An image's draw depends only on ``seed`` and its file name (not on its folder, its position
    or the other images), so the same image is shifted alike in every evaluation.
    """
    a = np.empty((len(paths), 3), dtype=np.float32)
    b = np.empty((len(paths), 3), dtype=np.float32)
    for i, path in enumerate(paths):
        key = zlib.crc32(os.fsencode(Path(path).name))
        draws = np.random.default_rng([seed, key]).uniform(-1.0, 1.0, 6)
        a[i], b[i] = draws[:3], draws[3:]
    return a, b


def _shifted_probabilities(
    model: InferenceModel,
    samples: Sequence[Sample],
    shift: Callable[..., Any],
    draws: tuple[npt.NDArray[np.float32], ...],
    *,
    tta: str,
    batch_size: int,
    host: PluginHost,
    image_info: Mapping[Path, ImageInfo],
    verbose: int,
) -> Scores:
    """The model's probabilities of ``samples`` with their stains shifted:
    ``shift(images, *draws)`` on each batch, with that batch's rows of each per-image array in
    ``draws`` (none: ``shift(images)``)."""
    import tensorflow as tf

    images = model.file_batches(samples, batch_size=batch_size, image_info=image_info)
    if draws:
        per_image = tf.data.Dataset.from_tensor_slices(draws).batch(batch_size)
        batches = tf.data.Dataset.zip((images, per_image)).map(
            lambda x, d: shift(x, *d), num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        batches = images.map(shift, num_parallel_calls=tf.data.AUTOTUNE)
    return model.scores(
        batches.prefetch(tf.data.AUTOTUNE),
        tta=tta,
        host=host,
        total=len(samples),
        verbose=verbose,
    )


def _difference(shifted: Statistic, unshifted: Statistic) -> Statistic:
    """The paired change of a statistic: shifted minus unshifted, on the same resamples."""

    def change(weights: FloatArray) -> FloatArray:
        return np.asarray(shifted(weights) - unshifted(weights), dtype=np.float64)

    return change


def _plot(
    curve: Sequence[Mapping[str, Any]], path: Path, title: str, xlabel: str = "HED shift strength"
) -> Path:
    from breastcls.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    strengths = np.array([point["strength"] for point in curve], dtype=np.float64)
    for axis, name, label in zip(axes, ("auc", "accuracy"), ("AUC", "accuracy"), strict=True):
        records = [point[name] for point in curve]
        shown = [i for i, r in enumerate(records) if r["estimate"] is not None]
        estimate = np.array([records[i]["estimate"] for i in shown], dtype=np.float64)
        low = np.array(
            [records[i]["low"] if records[i]["low"] is not None else np.nan for i in shown]
        )
        high = np.array(
            [records[i]["high"] if records[i]["high"] is not None else np.nan for i in shown]
        )
        x = strengths[shown]
        axis.fill_between(x, low, high, alpha=0.25, color="tab:blue", label="95% CI")
        axis.plot(x, estimate, "o-", color="tab:blue", label=label)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(label)
        axis.set_ylim(0.0, 1.02)
        axis.set_xticks(strengths)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower left", fontsize=8)
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def _format(record: Mapping[str, Any], *, signed: bool = False) -> str:
    if record["estimate"] is None:
        return "n/a"
    sign = "+" if signed else ""
    if record["low"] is None:
        return f"{record['estimate']:{sign}.3f}"
    return f"{record['estimate']:{sign}.3f} [{record['low']:{sign}.3f}, {record['high']:{sign}.3f}]"


def robustness_section(
    model: InferenceModel,
    predictions: Predictions,
    samples: Sequence[Sample],
    calibration: Calibration,
    out_dir: Path,
    *,
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost,
    image_info: Mapping[Path, ImageInfo] | None = None,
    set_description: str | None = None,
    strengths: Sequence[float] = STAIN_SHIFT_STRENGTHS,
    bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP,
    verbose: int = 0,
) -> MetricSection:
    """Re-score the evaluated set under HED stain shifts; write ``robustness.png``.

    Strength 0 is ``predictions`` itself (the evaluation's calibrated predictions; a shift of 0
    returns the images exactly); every other strength predicts the images once more, so the
    section costs ``len(strengths) - 1`` further passes over the set (with ``tta``'s copies).

    Args:
        model: The evaluated model.
        predictions: Its calibrated predictions of ``samples``, in the same order.
        samples: The evaluated images.
        calibration: The calibration applied to ``predictions``, applied unchanged here.
        out_dir: Where the figure goes.
        tta: The evaluation's test-time augmentation.
        batch_size: Images per model call.
        host: Plugin host (for the TTA).
        image_info: The images' scan, when the caller has one.
        set_description: How the evaluated set is named (``metrics.json``'s ``evaluated_on``).
        strengths: Shift strengths, in increasing order; 0 first.
        bootstrap: Resamples, seed and confidence level of the intervals; its seed is also
            the seed of the per-image draws.
        verbose: 1 reports prediction progress.
    """
    from breastcls.layers import adjust_hed

    seed = bootstrap.seed
    a, b = stain_shift_draws([str(s.path) for s in samples], seed=seed)
    values, resampling = _shift_curve(
        model,
        predictions,
        samples,
        calibration,
        lambda s: (adjust_hed, ((1.0 + s * a).astype(np.float32), (s * b).astype(np.float32))),
        strengths=strengths,
        tta=tta,
        batch_size=batch_size,
        host=host,
        image_info=image_info,
        set_description=set_description,
        bootstrap=bootstrap,
        verbose=verbose,
    )
    return _section(
        values,
        resampling,
        name="robustness",
        title="Robustness to stain shifts",
        about={
            "perturbation": "hed",
            "draws": (
                f"per image and stain, amount x (1 + s*a), + s*b; a, b ~ U(-1, 1) drawn once per "
                f"image from seed {seed} and the file name"
            ),
        },
        figure=out_dir / ROBUSTNESS_FIGURE,
        figure_title=f"Stain-shift robustness: {printable(values['set'])}",
        description=(
            "The evaluated set re-scored with each image's haematoxylin, eosin and DAB amounts "
            "scaled by 1 + s*a and shifted by s*b (a, b fixed per image, from U(-1, 1)); 0.05 is "
            "the range of the hed and pathology augmentations, 0.2 Tellez et al.'s HED-strong."
        ),
    )


def _section(
    values: Mapping[str, Any],
    resampling: Any,
    *,
    name: str,
    title: str,
    about: Mapping[str, Any],
    figure: Path,
    figure_title: str,
    description: str,
    xlabel: str = "HED shift strength",
) -> MetricSection:
    """A stain-shift section: ``about`` (what was shifted, and how) then the figures every such
    section records (:func:`_shift_curve`'s ``values``), the curve's figure, and ``description``
    followed by what every such section says and the table."""
    curve = values["curve"]
    text = (
        f"{description} The run's calibration is applied unchanged. Changes are paired: the "
        f"same {resampling.method} resamples at every strength.\n\n" + _table(curve)
    )
    return MetricSection(
        name=name,
        title=title,
        values={**about, **values},
        figures=(_plot(curve, figure, figure_title, xlabel=xlabel),),
        text=text,
    )


def _curve(
    model: InferenceModel,
    predictions: Predictions,
    samples: Sequence[Sample],
    strengths: Sequence[float],
    shifted: Callable[[float], Scores],
    bootstrap: BootstrapOptions,
) -> tuple[list[dict[str, Any]], Any]:
    """Each strength's statistics with intervals, and their paired changes from strength 0
    (``predictions`` itself); ``shifted(s)`` gives the scores at strength ``s``."""
    if list(strengths) != sorted(strengths) or not strengths or strengths[0] != 0.0:
        raise ConfigError(f"Stain shift strengths {list(strengths)} must start at 0 and increase.")
    scored: list[Predictions] = [predictions]
    for strength in strengths[1:]:
        scored.append(model.labelled(samples, shifted(strength), role=predictions.role))
    resampling = stratified_resampling(predictions, bootstrap)
    weights = resampling.image_weights
    level = bootstrap.level
    unshifted = image_statistics(predictions)
    curve: list[dict[str, Any]] = []
    for strength, shifted_predictions in zip(strengths, scored, strict=True):
        statistics = image_statistics(shifted_predictions)
        point: dict[str, Any] = {"strength": float(strength)}
        for name in _STATISTICS:
            point[name] = bootstrap_interval(statistics[name], weights, level=level).as_dict()
        for name in ("auc", "accuracy"):
            change = _difference(statistics[name], unshifted[name])
            point[f"{name}_change"] = bootstrap_interval(change, weights, level=level).as_dict()
        curve.append(point)
    return curve, resampling


_Shift = tuple[Callable[..., Any], tuple[npt.NDArray[np.float32], ...]]


def _shift_curve(
    model: InferenceModel,
    predictions: Predictions,
    samples: Sequence[Sample],
    calibration: Calibration,
    shift_at: Callable[[float], _Shift],
    *,
    strengths: Sequence[float],
    tta: str,
    batch_size: int,
    host: PluginHost,
    image_info: Mapping[Path, ImageInfo] | None,
    set_description: str | None,
    bootstrap: BootstrapOptions,
    verbose: int,
) -> tuple[dict[str, Any], Any]:
    """Score ``samples`` with ``shift_at(s)`` (a batch transform and its per-image arrays, see
    :func:`_shifted_probabilities`) at every strength ``s``: the figures every stain-shift
    section records (strengths, set, images, TTA, calibration, bootstrap, curve), and the
    bootstrap used."""
    from breastcls.data.images import scan_samples
    from breastcls.evaluation.metrics import describe_role

    info = image_info if image_info is not None else scan_samples(samples)[0]

    def shifted(strength: float) -> Scores:
        shift, draws = shift_at(strength)
        return _shifted_probabilities(
            model,
            samples,
            shift,
            draws,
            tta=tta,
            batch_size=batch_size,
            host=host,
            image_info=info,
            verbose=verbose,
        )

    curve, resampling = _curve(model, predictions, samples, strengths, shifted, bootstrap)
    values = {
        "strengths": [float(s) for s in strengths],
        "set": set_description or describe_role(predictions.role),
        "images": len(predictions.y_true),
        "tta": tta,
        "calibration": calibration.describe(),
        "bootstrap": resampling.describe(),
        "curve": curve,
    }
    return values, resampling


def _table(curve: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        f"{'strength':>8}  {'AUC [95% CI]':<24}{'accuracy [95% CI]':<24}"
        f"{'AUC change':<27}accuracy change"
    ]
    for point in curve:
        rows.append(
            f"{point['strength']:>8.2f}  {_format(point['auc']):<24}"
            f"{_format(point['accuracy']):<24}{_format(point['auc_change'], signed=True):<27}"
            f"{_format(point['accuracy_change'], signed=True)}"
        )
    return "\n".join(rows)


def reference_shift_section(
    model: InferenceModel,
    predictions: Predictions,
    samples: Sequence[Sample],
    calibration: Calibration,
    out_dir: Path,
    *,
    reference: Path,
    normaliser: str = "macenko",
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost,
    image_info: Mapping[Path, ImageInfo] | None = None,
    set_description: str | None = None,
    strengths: Sequence[float] = REFERENCE_SHIFT_STRENGTHS,
    bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP,
    verbose: int = 0,
) -> MetricSection:
    """Re-score the evaluated set moved towards a second reference stain; write
    ``robustness_reference.png``.

    The stain normaliser ``normaliser`` is fitted to ``reference`` (an image or a folder; its
    background is left out), each image is normalised to it and moved a share ``s`` of the way
    there in optical density. Strength 0 is ``predictions`` itself; the intervals and paired
    changes are those of :func:`robustness_section`.

    Args:
        model: The evaluated model.
        predictions: Its calibrated predictions of ``samples``, in the same order.
        samples: The evaluated images.
        calibration: The calibration applied to ``predictions``, applied unchanged here.
        out_dir: Where the figure goes.
        reference: An image or folder of images in the second stain.
        normaliser: The stain normaliser that moves images to the reference (``macenko``,
            ``reinhard`` or a plugin's).
        tta: The evaluation's test-time augmentation.
        batch_size: Images per model call.
        host: Plugin host (for the TTA and the normaliser).
        image_info: The images' scan, when the caller has one.
        set_description: How the evaluated set is named.
        strengths: Shares of the way to the reference, increasing from 0 (at most 1).
        bootstrap: Resamples, seed and confidence level of the intervals; its seed is also
            the seed of the reference's pixel sample.
        verbose: 1 reports prediction progress.

    Raises:
        ConfigError: ``normaliser`` is ``none``, or a strength lies outside [0, 1].
        DataError: The reference holds no image or too little tissue (named).
    """
    from breastcls.stain.layer import shift_towards

    fitted, layer = _reference_layer(
        reference, normaliser, strengths, host=host, seed=bootstrap.seed
    )
    values, resampling = _shift_curve(
        model,
        predictions,
        samples,
        calibration,
        lambda s: (lambda images: shift_towards(images, layer(images), s), ()),
        strengths=strengths,
        tta=tta,
        batch_size=batch_size,
        host=host,
        image_info=image_info,
        set_description=set_description,
        bootstrap=bootstrap,
        verbose=verbose,
    )
    return _reference_section(values, resampling, out_dir, reference, normaliser, fitted)


def _reference_section(
    values: Mapping[str, Any],
    resampling: Any,
    out_dir: Path,
    reference: Path,
    normaliser: str,
    fitted: StainFit,
) -> MetricSection:
    """The section of :func:`reference_shift_section`, from :func:`_shift_curve`'s figures."""
    return _section(
        values,
        resampling,
        name="stain_reference",
        title="Robustness to a shift towards a reference stain",
        about={
            "perturbation": "reference",
            "reference": str(reference),
            "normaliser": normaliser,
            "reference_images": fitted.images,
            "reference_parameters": dict(fitted.parameters),
            "shift": (
                f"each image normalised to the reference ({normaliser}) and moved a share s of "
                "the way there in optical density: (x + 1)^(1 - s) (y + 1)^s - 1"
            ),
        },
        figure=out_dir / REFERENCE_FIGURE,
        figure_title=(
            f"Shift towards the stain of {printable(reference.name)}: {printable(values['set'])}"
        ),
        description=(
            f"The evaluated set re-scored after moving each image towards the stain of "
            f"{printable(str(reference))} ({fitted.images} image(s)): {normaliser} normalisation "
            "to that reference, applied a share s of the way in optical density (s = 1: fully "
            "normalised)."
        ),
        xlabel="share of the way to the reference stain",
    )


def _reference_layer(
    reference: Path, normaliser: str, strengths: Sequence[float], *, host: PluginHost, seed: int
) -> tuple[StainFit, Any]:
    """The normaliser fitted to ``reference`` (its background left out) and its layer.

    Raises:
        ConfigError: ``normaliser`` is ``none``, or a strength lies outside [0, 1].
        DataError: The reference holds no image or too little tissue (named).
    """
    from breastcls.stain.fit import fit_stain_normaliser, reference_images

    if normaliser == "none":
        raise ConfigError(
            "The shift towards a reference stain needs a stain normaliser: use macenko or "
            "reinhard (--stain-transfer), not none."
        )
    if not all(0.0 <= s <= 1.0 for s in strengths):
        raise ConfigError(f"Reference-stain strengths {list(strengths)} must lie in [0, 1].")
    fitted = fit_stain_normaliser(
        normaliser,
        reference_images(reference),
        role=None,
        reference=str(reference),
        host=host,
        seed=seed,
    )
    return fitted, host.stain_normalisers.get(normaliser).layer(fitted.parameters)
