"""Built-in slide readers: tiled and pyramidal TIFF files, and large flat PNG/JPEG images."""

from __future__ import annotations

from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry
from breastcls.slides.readers import ImageSlideReader, SlideReader, TiffSlideReader

__all__: list[str] = []


@hookimpl
def breastcls_register_slide_readers(registry: PluginRegistry[SlideReader]) -> None:
    """Register ``tiff`` and ``image``."""
    registry.add(
        "tiff",
        TiffSlideReader(),
        summary="tiled or pyramidal TIFF (generic, SVS, NDPI) read tile by tile with tifffile",
    )
    registry.add(
        "image", ImageSlideReader(), summary="large flat PNG or JPEG images, decoded whole"
    )
