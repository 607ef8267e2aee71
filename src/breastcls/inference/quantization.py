"""int8 quantisation of a model's ONNX conversion, calibrated on its run's selection images.

``--runtime onnx-int8`` (:func:`~breastcls.inference.runtime.choose_runtime`) runs an int8 copy
of the float32 ONNX conversion: static quantisation with ``onnxruntime.quantization`` of the
graph as ONNX Runtime optimises it (weights int8 per output channel, activations uint8, the
value ranges of the activations measured with min-max on calibration images; the
classification head kept float32). The calibration images are half of the run's selection images
(every other one, at most :data:`CALIBRATION_IMAGES`), never a test image; the other half (at
most :data:`CHECK_IMAGES`) measures the int8 model's agreement with float32: the largest
difference of a probability and the AUC of the positive score on each, so that nothing is
reported on the images it was fitted on.

Importing this module imports neither TensorFlow nor ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.interfaces import Sample
from breastcls.onnx_graph import expand_hard_activations

__all__ = [
    "CALIBRATION_IMAGES",
    "CHECK_IMAGES",
    "SelectionImages",
    "agreement",
    "quantize_onnx",
]

FloatArray = npt.NDArray[np.float64]

CALIBRATION_IMAGES = 128
"""The most selection images the int8 model's value ranges are measured on."""
CHECK_IMAGES = 256
"""The most (other) selection images its agreement with float32 is measured on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectionImages:
    """A run's selection images, as the int8 quantisation needs them.

    Attributes:
        samples: The selection images, in ``split.csv``'s order.
        batches: Batches of 0-255 float32 images of the samples given, resized as the model
            expects (an iterable of arrays or a ``tf.data`` dataset).
        positive: Whether each sample is of the positive group (malignant).
        score: The positive score of probabilities (``(n, classes)`` to ``(n,)``).
    """

    samples: tuple[Sample, ...]
    batches: Callable[[Sequence[Sample]], Any]
    positive: npt.NDArray[np.bool_]
    score: Callable[[FloatArray], FloatArray]

    @property
    def calibration(self) -> list[Sample]:
        """Every other selection image from the first: what the value ranges are measured on."""
        return list(self.samples[0::2][:CALIBRATION_IMAGES])

    @property
    def check(self) -> list[int]:
        """Indices of the other selection images: what the agreement is measured on."""
        return list(range(1, len(self.samples), 2))[:CHECK_IMAGES]

    @property
    def fingerprint(self) -> str:
        """A hash of the images and labels: another selection set is quantised again."""
        digest = hashlib.sha256()
        for sample in self.samples:
            digest.update(f"{sample.path}\0{sample.label}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()


class _CalibrationReader:
    """The calibration batches, as ``onnxruntime.quantization`` reads them (``get_next``)."""

    def __init__(self, batches: Any, input_name: str) -> None:
        self._batches: Iterator[Any] = iter(batches)
        self._input_name = input_name

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        return {self._input_name: np.asarray(batch, dtype=np.float32)}


def quantize_onnx(source: Path, target: Path, batches: Any, input_name: str) -> None:
    """Write ``target``, an int8 copy of the float32 ONNX model ``source``, its activations'
    ranges measured on ``batches`` (0-255 float32 images).

    The graph is first optimised as ONNX Runtime would run it (``quant_pre_process``: fused
    convolutions and activations, so fewer tensors are quantised). The format is ONNX
    Runtime's "QDQ" (quantise and dequantise pairs around each operator, fused into integer
    kernels when the session loads), weights int8 per output channel with the reduced range
    that CPUs without VNNI instructions need to avoid saturating their 16-bit sums. The head
    (every node after the last global pooling) stays float32: a logit rounded to 8 bits moved
    probabilities near the threshold most. Hard-sigmoid and hard-swish nodes are spelled out
    first (:func:`~breastcls.onnx_graph.expand_hard_activations`): ONNX Runtime has integer
    kernels for their ``Add`` and ``Mul``, none for ``HardSigmoid``. On MobileNetV3Small at
    224 px (2 shared AVX2 cores, no VNNI) this ran 1.4x the float32 graph as tf2onnx writes it
    (1.07x for the plain QOperator copy) and changed the AUC by 0.0002 instead of 0.035, but
    no faster than float32 with its hard activations fused (docs/performance.md, issue 29).
    """
    # It logs (on the root logger) that a pre-processing step may help: advice to developers,
    # not to a user of the model.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    prepared = target.with_name(f"{target.stem}.prepared.onnx")
    try:
        _quantize_static(source, prepared, target, batches, input_name)
    finally:
        prepared.unlink(missing_ok=True)
        root.setLevel(level)


_GLOBAL_POOLING = ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean")


def _head_nodes(model: Any) -> list[str]:
    """The names of the nodes after the graph's last global pooling: the classification head
    (none when the graph has no global pooling)."""
    nodes = list(model.graph.node)
    pools = [i for i, node in enumerate(nodes) if node.op_type in _GLOBAL_POOLING]
    return [node.name for node in nodes[pools[-1] + 1 :]] if pools else []


def _quantize_static(
    source: Path, prepared: Path, target: Path, batches: Any, input_name: str
) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    graph = onnx.load(str(prepared))
    if expand_hard_activations(graph):
        onnx.save(graph, str(prepared))
    quantize_static(
        str(prepared),
        str(target),
        _CalibrationReader(batches, input_name),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=_head_nodes(graph),
    )


def _auc(positive: npt.NDArray[np.bool_], score: FloatArray) -> float | None:
    if not 0 < int(positive.sum()) < len(positive):
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, score))


def agreement(float32: FloatArray, int8: FloatArray, selection: SelectionImages) -> dict[str, Any]:
    """How far the int8 model's probabilities are from float32's on the check images
    (:attr:`SelectionImages.check`): the largest absolute difference of a probability, and the
    AUC of the positive score on each (``None`` where the check images hold one group only).
    """
    check = selection.check
    found: dict[str, Any] = {
        "check_images": len(check),
        "check_set": "selection images not used for calibration",
    }
    if not check:
        return {**found, "max_abs_diff": None, "auc_float32": None, "auc_int8": None,
                "auc_change": None}  # fmt: skip
    positive = selection.positive[check]
    auc_float32 = _auc(positive, selection.score(float32))
    auc_int8 = _auc(positive, selection.score(int8))
    change = None if auc_float32 is None or auc_int8 is None else auc_int8 - auc_float32
    return {
        **found,
        "max_abs_diff": float(np.abs(int8 - float32).max()),
        "auc_float32": auc_float32,
        "auc_int8": auc_int8,
        "auc_change": change,
    }
