"""The model card: a Markdown description of a trained model, written into every run folder.

It says what the model is for (research only, never diagnosis), what it was trained on, how it
scores (with confidence intervals when ``metrics.json`` has them), its limitations, its class
names and the input it expects. :func:`breastcls.export_model` copies it beside each export.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from breastcls.io import atomic_write_text
from breastcls.runs.folder import RunFolder

__all__ = ["model_card_text", "write_model_card"]


_PREPROCESSING = {
    "none": "none: the network receives raw 0-255 RGB values",
    "tf": "tf: pixels scaled to [-1, 1]",
    "torch": "torch: pixels scaled to [0, 1], then ImageNet mean and standard deviation",
    "caffe": "caffe: RGB turned to BGR, then the ImageNet channel means subtracted",
}


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


def _backbone_preprocessing(backbone: str, setting: str) -> str:
    if setting == "none":
        return _PREPROCESSING["none"] + " (`--preprocessing none`, as the seed blog)"
    from breastcls.errors import BreastclsError
    from breastcls.plugins.host import default_host

    try:
        mode = str(default_host().backbones.get(backbone).preprocessing)
    except BreastclsError:
        return f"the backbone {backbone!r}'s own (its plugin is not installed here)"
    return _PREPROCESSING.get(mode, mode)


def _metrics_lines(metrics: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    classification = metrics.get("classification")
    if isinstance(classification, Mapping):
        lines.append(f"- Accuracy: {_fmt(classification.get('accuracy'))}")
        per_class = classification.get("per_class", {})
        if per_class:
            lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
            for name, row in per_class.items():
                lines.append(
                    f"| {name} | {_fmt(row.get('precision'))} | {_fmt(row.get('recall'))} | "
                    f"{_fmt(row.get('f1'))} | {_fmt(row.get('support'))} |"
                )
    bootstrap = metrics.get("bootstrap")
    if isinstance(bootstrap, Mapping) and isinstance(bootstrap.get("intervals"), Mapping):
        level = bootstrap.get("level", 0.95)
        resampled = bootstrap.get("resampled", "images")
        caveat = (
            "whole patients drawn within each class, so one patient's correlated images "
            "move together"
            if resampled == "patients"
            else "images drawn within each class; patient ids are unknown, so if one patient "
            "has several images the true uncertainty is wider"
        )
        lines += [
            "",
            f"Bootstrap {float(level):.0%} confidence intervals "
            f"({bootstrap.get('method', 'percentile bootstrap')}, "
            f"{bootstrap.get('n_resamples', '?')} resamples: {caveat}):",
            "",
            "| statistic | estimate | low | high |",
            "|---|---|---|---|",
        ]
        for name, interval in bootstrap["intervals"].items():
            lines.append(
                f"| {name} | {_fmt(interval.get('estimate'))} | {_fmt(interval.get('low'))} | "
                f"{_fmt(interval.get('high'))} |"
            )
    else:
        lines += ["", "No confidence intervals were computed for this run."]
    return lines


def model_card_text(run_dir: Path) -> str:
    """Return the model card of the run folder ``run_dir`` as Markdown.

    It reads ``config.json``, ``class_names.json``, ``metrics.json`` and ``environment.json``;
    a missing file leaves its part marked as unknown.
    """
    run = RunFolder(run_dir)
    config: dict[str, Any] = _read_json(run.config) or {}
    class_names: list[str] = _read_json(run.class_names) or []
    metrics: dict[str, Any] = _read_json(run.metrics) or {}
    env: dict[str, Any] = _read_json(run.environment) or {}
    lines = [
        f"# Model card: {run_dir.name}",
        "",
        "## Intended use",
        "",
        "Research and teaching on breast-tumour histopathology images (H&E micrographs, "
        "BreakHis-style). **Not a medical device: do not use it to diagnose, screen or "
        "treat anyone.** Its outputs have not been validated clinically.",
        *_model_lines(config, env),
        "",
        "## Classes",
        "",
        *[f"{index}. `{name}`" for index, name in enumerate(class_names)],
        *_data_lines(config),
        "",
        f"## Metrics ({metrics.get('evaluated_on', {}).get('set', 'unknown set')}, best epoch)",
        "",
        *_metrics_lines(metrics),
        *_limitations(config.get("split", {})),
    ]
    return "\n".join(lines) + "\n"


def _model_lines(config: Mapping[str, Any], env: Mapping[str, Any]) -> list[str]:
    model = config.get("model", {})
    size = config.get("data", {}).get("image_size", "unknown")
    backbone = model.get("backbone", "unknown")
    return [
        "",
        "## Model",
        "",
        f"- Backbone: `{backbone}`, head: `{model.get('head', 'unknown')}`, training "
        f"augmentation: `{model.get('augmentation', 'unknown')}` (inactive at inference)",
        f"- Initial weights: `{model.get('weights')}`",
        f"- Trained by breastcls {env.get('breastcls', 'unknown')} with TensorFlow "
        f"{env.get('tensorflow', 'unknown')} and Keras {env.get('keras', 'unknown')}",
        "",
        "## Input",
        "",
        f"- RGB images of {size}×{size} pixels, values 0-255 (float32), shape "
        f"`(batch, {size}, {size}, 3)`; resize images to this size first",
        f"- Preprocessing, applied inside the model: "
        f"{_backbone_preprocessing(backbone, model.get('preprocessing', 'backbone'))}",
        "- Output: one probability per class (softmax; rows sum to 1)",
    ]


def _data_lines(config: Mapping[str, Any]) -> list[str]:
    data, train, split = config.get("data", {}), config.get("train", {}), config.get("split", {})
    return [
        "",
        "## Data",
        "",
        f"- Training data: `{data.get('path', 'unknown')}`",
        f"- Split: {split.get('method', 'unknown')} — {split.get('train_images', '?')} training, "
        f"{split.get('selection_images', '?')} selection and {split.get('test_images', '?')} "
        f"test images (split seed {data.get('split_seed', '?')})",
        "- The selection set chose the best epoch, the learning-rate schedule, the temperature "
        "and the thresholds; the test set was scored once, by the final model",
        f"- Training: {train.get('epochs', '?')} epochs, batch {train.get('batch_size', '?')}, "
        f"learning rate {train.get('learning_rate', '?')}, seed {train.get('seed', '?')}",
    ]


def _limitations(split: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Limitations",
        "",
        "- Test images come from the training distribution (same lab, scanner and "
        "staining); expect lower scores on other sites.",
        "- Scores on a small test set are uncertain; check the confidence intervals.",
        "- The model only knows the classes above: it gives an answer for any image, "
        "including ones that are not histopathology.",
    ]
    if split.get("leaky"):
        lines.append(
            "- **The split was by image, not by patient: images of one patient are on both "
            "sides, so the test scores are optimistic.**"
        )
    return lines


def write_model_card(run_dir: Path, out: Path | None = None) -> Path:
    """Write the model card of ``run_dir`` (atomically) and return its path.

    Args:
        run_dir: The run folder.
        out: Where to write it (default: ``run_dir/model_card.md``).
    """
    target = out if out is not None else RunFolder(run_dir).model_card
    atomic_write_text(target, model_card_text(run_dir))
    return target
