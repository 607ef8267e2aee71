"""Built-in tissue detectors: optical density over glass with a marker-ink filter (the default),
and the saturation threshold of breastcls 0.2."""

from __future__ import annotations

from breastcls.interfaces import TissueDetector
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry
from breastcls.slides.tissue import OpticalDensityDetector, SaturationDetector

__all__: list[str] = []


@hookimpl
def breastcls_register_tissue_detectors(registry: PluginRegistry[TissueDetector]) -> None:
    """Register ``optical-density`` and ``saturation``."""
    registry.add(
        "optical-density",
        OpticalDensityDetector(),
        summary="optical density over the slide's glass, pale tissue grown from stained "
        "tissue, marker ink (blue, green, black) and specks under 2,500 µm² left out (default)",
    )
    registry.add(
        "saturation",
        SaturationDetector(),
        summary="Otsu on saturation capped at 15/255 (breastcls 0.2): loses pale tissue, "
        "keeps saturated pen ink",
    )
