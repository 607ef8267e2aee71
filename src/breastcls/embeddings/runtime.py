"""The runtime of a frozen extractor with a probe: images to cached embeddings to probabilities.

:class:`ProbeRuntime` is a :class:`~breastcls.inference.runtime.Runtime` like the others, so a
probe model goes through the one door (:class:`~breastcls.inference.InferenceModel`) and its
one probability path: evaluation, prediction, calibration and slides. Each image (each
test-time augmentation copy) is looked up in the embedding cache by its pixels and embedded by
the extractor only when it is not there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from breastcls.embeddings.cache import CachedEmbedder, FreshEmbedder
from breastcls.inference.runtime import RuntimeOutput
from breastcls.interfaces import TTA

__all__ = ["ProbeRuntime", "probe_probabilities"]


def probe_probabilities(probe: Any, embeddings: Any) -> Any:
    """The probe's ``(n, n_classes)`` float64 probabilities of ``(n, d)`` embeddings."""
    return np.asarray(probe(np.asarray(embeddings, np.float32), training=False), np.float64)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeRuntime:
    """A frozen extractor (through its cache) and the Keras probe fitted on its embeddings.

    Attributes:
        embedder: The extractor behind its cache (none for images seen once, as slide tiles).
        probe: The probe: a Keras model from ``(n, d)`` embeddings to probabilities.
        reason: Why it runs here (the extractor's kind decides).
    """

    embedder: CachedEmbedder | FreshEmbedder
    probe: Any
    reason: str = "a frozen extractor with a probe (embeddings cached)"

    def uncached(self) -> ProbeRuntime:
        """The same runtime embedding every image afresh, storing nothing (slide tiles)."""
        return ProbeRuntime(
            embedder=self.embedder.uncached(),
            probe=self.probe,
            reason="a frozen extractor with a probe (each image embedded afresh, none cached)",
        )

    @property
    def name(self) -> Literal["tensorflow", "onnx"]:
        """``onnx`` for an ONNX extractor, ``tensorflow`` for a Keras one."""
        return "onnx" if self.embedder.spec.kind == "onnx" else "tensorflow"

    def iter_outputs(
        self, batches: Any, *, tta: TTA | None = None, features: bool = False
    ) -> Iterator[RuntimeOutput]:
        """See :meth:`~breastcls.inference.runtime.Runtime.iter_outputs`; the features are
        the extractor's embedding (averaged over the TTA copies) and the image statistics."""
        for images in batches:
            pixels = np.asarray(images, dtype=np.float32)
            views = [pixels] if tta is None or tta.size == 1 else list(np.asarray(tta(images)))
            embedded = np.stack([self.embedder.embeddings(view) for view in views])
            probabilities = np.mean(
                [probe_probabilities(self.probe, view) for view in embedded], axis=0
            )
            if not features:
                yield RuntimeOutput(probabilities)
                continue
            from breastcls.inference.domain import image_statistics

            statistics = np.asarray(image_statistics(pixels), dtype=np.float64)
            found = np.concatenate([embedded.mean(axis=0).astype(np.float64), statistics], 1)
            yield RuntimeOutput(probabilities, found)
