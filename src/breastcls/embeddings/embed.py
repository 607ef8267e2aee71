"""``breastcls embed``: fill the embedding cache of a frozen extractor for a folder of images.

Every later run, fold and evaluation on the same images reads the embeddings from the cache
(:mod:`breastcls.embeddings.cache`) instead of running the extractor. The work is written in
chunks of a few batches, each one shard; a killed ``embed`` resumes where it stopped, as the
images already embedded are found in the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastcls.config import DataConfig
from breastcls.data.images import describe_unreadable, scan_samples
from breastcls.embeddings.cache import CachedEmbedder
from breastcls.embeddings.extractor import FrozenExtractor
from breastcls.errors import ConfigError, DataError
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.progress import active_reporter

__all__ = ["CHUNK_BATCHES", "EmbedSummary", "embed"]

CHUNK_BATCHES = 4
"""Batches per shard (and per progress line) of :func:`embed`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedSummary:
    """What :func:`embed` did.

    Attributes:
        images: The images of the data.
        views: Embeddings per image (the TTA's copies; 1 without TTA).
        computed: Embeddings the extractor computed now.
        reused: Embeddings found in the cache.
        cache: The cache folder.
    """

    images: int
    views: int
    computed: int
    reused: int
    cache: Path

    def describe(self) -> str:
        """One line: how many, computed and reused, and where."""
        views = f" x {self.views} views" if self.views > 1 else ""
        return (
            f"{self.images} images{views}: {self.computed} embeddings computed, "
            f"{self.reused} from the cache ({self.cache})"
        )


def embed(
    data: Path,
    backbone: str,
    *,
    backbone_options: dict[str, Any] | None = None,
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost | None = None,
    cache_root: Path | None = None,
) -> EmbedSummary:
    """Embed every image of ``data`` (any dataset format) with the frozen extractor
    ``backbone`` into its cache; with ``tta``, every copy of the test-time augmentation too.

    Args:
        data: A dataset (folder of class folders, manifest...).
        backbone: A frozen extractor's backbone id (``onnx``, ``keras``).
        backbone_options: Its options (``file``, ``input_size``, ``mean``, ``std``...).
        tta: Test-time augmentation id whose copies are embedded as well.
        batch_size: Images per extractor call.
        host: Plugin host (the default one when ``None``).
        cache_root: The folder of embedding caches (default: ``<cache_dir>/embeddings``).

    Raises:
        ConfigError: The backbone is not a frozen extractor, or its options are wrong.
        ModelLoadError: The extractor's input size or output does not fit (one line).
        DataError: The data is unusable, or holds unreadable images.
    """
    host = ensure_host(host)
    extractor = host.backbones.get(backbone, backbone_options)
    if not isinstance(extractor, FrozenExtractor):
        raise ConfigError(
            f"Backbone {backbone!r} is not a frozen extractor: embed takes onnx or keras "
            "(with --backbone-option file=PATH)."
        )
    component = host.tta.get(tta)
    # Opened once: its input size and output are checked before any image is decoded.
    loaded = extractor.load()
    embedder = CachedEmbedder(extractor, sha256=loaded.sha256, root=cache_root, extractor=loaded)
    samples = _readable_samples(data, extractor.input_size, host)
    _embed_batches(embedder, samples, component, batch_size, extractor.input_size)
    return EmbedSummary(
        images=len(samples),
        views=component.size,
        computed=embedder.computed,
        reused=embedder.reused,
        cache=embedder.cache.folder,
    )


def _readable_samples(data: Path, image_size: int, host: PluginHost) -> list[Any]:
    from breastcls.data.loading import load_dataset

    dataset = load_dataset(DataConfig(path=data, image_size=image_size), host=host)
    _, bad = scan_samples(dataset.samples)
    if bad:
        raise DataError(f"{describe_unreadable(bad)} Fix or remove them, then embed again.")
    return list(dataset.samples)


def _embed_batches(
    embedder: CachedEmbedder, samples: list[Any], tta: Any, batch_size: int, size: int
) -> None:
    """Embed in chunks of :data:`CHUNK_BATCHES` batches, each written as one shard and
    reported as one progress line."""
    import numpy as np

    from breastcls.data.pipeline import make_dataset

    reporter = active_reporter()
    batches = make_dataset(
        samples, sorted({s.label for s in samples}), image_size=size, batch_size=batch_size
    )
    done = 0
    if reporter is not None:
        reporter.task_started("embedding", total=len(samples), unit="images")
    for number, (images, _) in enumerate(batches, start=1):
        views = [images.numpy()] if tta.size == 1 else list(np.asarray(tta(images)))
        for view in views:
            embedder.embeddings(view, flush=False)
        done += len(views[0])
        if number % CHUNK_BATCHES == 0 or done == len(samples):
            embedder.cache.flush()
            if reporter is not None:
                reporter.task_finished(
                    f"embedded {done}/{len(samples)} images ({embedder.computed} computed, "
                    f"{embedder.reused} from the cache)"
                )
                if done < len(samples):
                    reporter.task_started("embedding", total=len(samples), unit="images")
                    reporter.task_advanced(done)
