"""Frozen feature extractors (foundation models), their embedding cache and probes."""

from __future__ import annotations

from breastcls.embeddings.extractor import FrozenExtractor, LoadedExtractor, extractor_calls

__all__ = ["FrozenExtractor", "LoadedExtractor", "extractor_calls"]
