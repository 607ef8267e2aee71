"""Built-in stain normalisers: none, Reinhard and Macenko."""

from __future__ import annotations

from breastcls.interfaces import StainNormaliser
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry
from breastcls.stain.normalisers import MacenkoNormaliser, NoNormaliser, ReinhardNormaliser


@hookimpl
def breastcls_register_stain_normalisers(registry: PluginRegistry[StainNormaliser]) -> None:
    """Register ``none``, ``reinhard`` and ``macenko``."""
    registry.add("none", NoNormaliser(), summary="no stain normalisation (the default)")
    registry.add(
        "reinhard",
        ReinhardNormaliser(),
        summary="Reinhard: each image's lαβ mean and std over its tissue matched to the reference",
    )
    registry.add(
        "macenko",
        MacenkoNormaliser(),
        summary="Macenko: each image's H and E vectors and amounts mapped to the reference's",
    )
