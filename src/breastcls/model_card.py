"""The model card: a Markdown description of a trained model, written into every run folder.

It says what the model is for (research only, never diagnosis), what it was trained on, how it
scores (with confidence intervals when ``metrics.json`` has them), its limitations, its class
names and the input it expects. :func:`breastcls.export_model` copies it beside each export.

Every string that comes from data, a configuration, a record or a plugin (class names, paths,
component ids, metric names...) is escaped: in text, Markdown punctuation gets a backslash and
``<``, ``>``, ``&`` become HTML entities; elsewhere it is a code span fenced by more backticks
than it holds. Line breaks become spaces and bytes of a file name that are not UTF-8 are shown
as ``\\xNN``. A rendered card holds no tag, link or table cell that a name put there.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from breastcls.config import RunConfig
from breastcls.io import atomic_write_text, printable
from breastcls.records import ConfigRecord
from breastcls.runs.folder import RunFolder

__all__ = ["markdown_code", "markdown_text", "model_card_text", "write_model_card"]

# The characters that make Markdown structure inside a line (code, emphasis, links, images,
# table cells), which every renderer (CommonMark, GitHub, Python-Markdown) lets a backslash
# escape; ``<``, ``>`` and ``&`` become HTML entities instead. (A user string never starts a
# line of the card, so the line-start markers ``#``, ``-``, ``+``, ``1.`` stay as they are.)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()|])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def _plain(value: Any) -> str:
    """``value`` as one line of valid UTF-8 (a file name's stray bytes as ``\\xNN``)."""
    return _LINE_BREAKS.sub(" ", printable(value))


def markdown_text(value: Any) -> str:
    """Escape ``value`` for Markdown text (a paragraph, a list item, a table cell): every
    Markdown character is backslash-escaped and ``<``, ``>``, ``&`` become HTML entities, so no
    tag, link, emphasis or table cell can come out of it. Numbers are written as they are."""
    if isinstance(value, (int, float)):
        return str(value)
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", _plain(value))
    return html.escape(escaped, quote=False)


def markdown_code(value: Any) -> str:
    """``value`` as a Markdown code span (shown verbatim, never rendered), fenced by more
    backticks than it holds. Not for table cells, where a ``|`` would end the cell."""
    text = _plain(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") or not text else text
    return f"{fence}{padded}{fence}"


_PREPROCESSING = {
    "none": "none: the network receives raw 0-255 RGB values",
    "tf": "tf: pixels scaled to [-1, 1]",
    "torch": "torch: pixels scaled to [0, 1], then ImageNet mean and standard deviation",
    "caffe": "caffe: RGB turned to BGR, then the ImageNet channel means subtracted",
}


def _section(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    return value if isinstance(value, Mapping) else {}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else markdown_text(value)


def _backbone_preprocessing(backbone: Any, setting: Any) -> str:
    if setting == "none":
        return _PREPROCESSING["none"] + " (`--preprocessing none`, as the seed blog)"
    from breastcls.errors import BreastclsError
    from breastcls.plugins.host import default_host

    try:
        mode = str(default_host().backbones.get(backbone).preprocessing)
    except BreastclsError:
        return f"the backbone {markdown_code(backbone)}'s own (its plugin is not installed here)"
    return _PREPROCESSING.get(mode, markdown_text(mode))


def _records(table: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The rows of a ``metrics.json`` table by name, a malformed row read as empty."""
    return [(name, row if isinstance(row, Mapping) else {}) for name, row in table.items()]


def _metrics_lines(metrics: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    classification = metrics.get("classification")
    if isinstance(classification, Mapping):
        lines.append(f"- Accuracy: {_fmt(classification.get('accuracy'))}")
        per_class = _section(classification, "per_class")
        if per_class:
            lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
            for name, row in _records(per_class):
                lines.append(
                    f"| {markdown_text(name)} | {_fmt(row.get('precision'))} | "
                    f"{_fmt(row.get('recall'))} | {_fmt(row.get('f1'))} | "
                    f"{_fmt(row.get('support'))} |"
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
        level = level if isinstance(level, (int, float)) else 0.95
        lines += [
            "",
            f"Bootstrap {float(level):.0%} confidence intervals "
            f"({markdown_text(bootstrap.get('method', 'percentile bootstrap'))}, "
            f"{markdown_text(bootstrap.get('n_resamples', '?'))} resamples: {caveat}):",
            "",
            "| statistic | estimate | low | high |",
            "|---|---|---|---|",
        ]
        for name, interval in _records(bootstrap["intervals"]):
            flat = interval.get("low") is not None and interval.get("low") == interval.get("high")
            lines.append(
                f"| {markdown_text(name)}{' (zero width)' if flat else ''} | "
                f"{_fmt(interval.get('estimate'))} | "
                f"{_fmt(interval.get('low'))} | {_fmt(interval.get('high'))} |"
            )
        lines += _patient_count_lines(metrics, bootstrap)
    else:
        lines += ["", "No confidence intervals were computed for this run."]
    return lines


def _patient_count_lines(metrics: Mapping[str, Any], bootstrap: Mapping[str, Any]) -> list[str]:
    """Patients per class, exact per-patient bounds, and every interval warning."""
    counts = _section(bootstrap, "resampled_per_class")
    unit = markdown_text(bootstrap.get("resampled", "images"))
    lines = [""]
    if counts:
        per_class = ", ".join(f"{markdown_text(k)} {_fmt(v)}" for k, v in counts.items())
        lines.append(f"Resampled {unit} per class: {per_class}.")
    exact = _section(bootstrap, "exact_per_patient")
    if exact:
        lines += ["", "Exact (Clopper-Pearson) bounds, one trial per patient:", ""]
        for name, bound in _records(exact):
            lines.append(
                f"- {markdown_text(name)}: {_fmt(bound.get('successes'))} of "
                f"{_fmt(bound.get('trials'))} patients, [{_fmt(bound.get('low'))}, "
                f"{_fmt(bound.get('high'))}]"
            )
    patient = _section(metrics, "patient")
    warnings = [*bootstrap.get("warnings", ()), *patient.get("warnings", ())]
    seen = list(dict.fromkeys(str(w) for w in warnings))
    if seen:
        lines += ["", *(f"- **Warning: {markdown_text(w)}.**" for w in seen)]
    return lines


def model_card_text(run_dir: Path) -> str:
    """Return the model card of the run folder ``run_dir`` as Markdown.

    It reads ``config.json``, ``class_names.json``, ``metrics.json`` and ``environment.json``
    (through :class:`~breastcls.runs.folder.RunFolder`'s validated readers); a missing file
    leaves its part marked as unknown. Every string from them is escaped (see the module).

    Raises:
        ConfigError: One of them is there but unreadable or malformed.
    """
    run = RunFolder(run_dir)
    config = run.read_config_record() if run.config.is_file() else None
    class_names = run.read_class_names() if run.class_names.is_file() else ()
    metrics = run.read_metrics()
    env = run.read_record(run.environment) if run.environment.is_file() else {}
    env = env if isinstance(env, Mapping) else {}
    evaluated_on = _section(metrics, "evaluated_on").get("set", "unknown set")
    lines = [
        f"# Model card: {markdown_text(Path(run_dir).name)}",
        "",
        "## Intended use",
        "",
        "Research and teaching on breast-tumour histopathology images (H&E micrographs, "
        "BreakHis-style). **Not a medical device: do not use it to diagnose, screen or "
        "treat anyone.** Its outputs have not been validated clinically.",
        *_model_lines(config.run_config if config else None, env),
        "",
        "## Classes",
        "",
        *[f"{index}. {markdown_code(name)}" for index, name in enumerate(class_names)],
        *_data_lines(config),
        "",
        f"## Metrics ({markdown_text(evaluated_on)}, best epoch)",
        "",
        *_metrics_lines(metrics),
        *_limitations(config.split if config else {}),
    ]
    return "\n".join(lines) + "\n"


_NO_CONFIG = "- Unknown: the run folder has no config.json"


def _model_lines(config: RunConfig | None, env: Mapping[str, Any]) -> list[str]:
    if config is None:
        return ["", "## Model", "", _NO_CONFIG]
    model, size = config.model, markdown_text(config.data.image_size)
    return [
        "",
        "## Model",
        "",
        f"- Backbone: {markdown_code(model.backbone)}, head: {markdown_code(model.head)}, "
        f"training augmentation: {markdown_code(model.augmentation)} (inactive at inference)",
        f"- Initial weights: {markdown_code(model.weights)}",
        f"- Trained by breastcls {markdown_text(env.get('breastcls', 'unknown'))} with TensorFlow "
        f"{markdown_text(env.get('tensorflow', 'unknown'))} and Keras "
        f"{markdown_text(env.get('keras', 'unknown'))}",
        "",
        "## Input",
        "",
        f"- RGB images of {size}×{size} pixels, values 0-255 (float32), shape "
        f"`(batch, {size}, {size}, 3)`; resize images to this size first",
        f"- Preprocessing, applied inside the model: "
        f"{_backbone_preprocessing(model.backbone, model.preprocessing)}",
        "- Output: one probability per class (softmax; rows sum to 1)",
    ]


def _data_lines(config: ConfigRecord | None) -> list[str]:
    if config is None:
        return ["", "## Data", "", _NO_CONFIG]
    data, train, split = config.run_config.data, config.run_config.train, config.split

    def text(section: Mapping[str, Any], key: str) -> str:
        return markdown_text(section.get(key, "?"))

    def patients(role: str) -> str:
        count = split.get(f"{role}_patients")
        return f" ({markdown_text(count)} patients)" if count is not None else ""

    return [
        "",
        "## Data",
        "",
        f"- Training data: {markdown_code(data.path)}",
        f"- Split: {markdown_text(split.get('method', 'unknown'))} — "
        f"{text(split, 'train_images')} training{patients('train')}, "
        f"{text(split, 'selection_images')} selection{patients('selection')} "
        f"and {text(split, 'test_images')} test images{patients('test')} "
        f"(split seed {data.split_seed})",
        "- The selection set chose the best epoch, the learning-rate schedule, the temperature "
        "and the thresholds; the test set was scored once, by the final model",
        f"- Training: {train.epochs} epochs, batch {train.batch_size}, "
        f"learning rate {markdown_text(train.learning_rate)}, seed {train.seed}",
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
        lines.append(f"- **{markdown_text(_leak_cause(split))}**")
    return lines


def _leak_cause(split: Mapping[str, Any]) -> str:
    """Why the split is leaky, and what that does to the figures, as the record says."""
    label = split.get("leak") or "LEAKY: patients in two roles (optimistic)"
    if split.get("method") == "image-leaky":
        cause = "the split was by image although patient ids were known"
    elif split.get("test_from") == "data":
        cause = "the data's own split (folders or manifest) puts patients in several roles"
    else:
        cause = "patients are in several roles"
    return f"{label}: {cause}, so the model saw these patients and its scores are optimistic."


def write_model_card(run_dir: Path, out: Path | None = None) -> Path:
    """Write the model card of ``run_dir`` (atomically) and return its path.

    Args:
        run_dir: The run folder.
        out: Where to write it (default: ``run_dir/model_card.md``).
    """
    target = out if out is not None else RunFolder(run_dir).model_card
    atomic_write_text(target, model_card_text(run_dir))
    return target
