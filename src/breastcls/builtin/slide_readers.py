"""Built-in slide readers: tiled and pyramidal TIFF files, OpenSlide's formats, and large flat
PNG/JPEG images."""

from __future__ import annotations

from breastcls.interfaces import SlideReader
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry
from breastcls.slides.readers import ImageSlideReader, OpenSlideReader, TiffSlideReader

__all__: list[str] = []


@hookimpl
def breastcls_register_slide_readers(registry: PluginRegistry[SlideReader]) -> None:
    """Register ``tiff``, ``openslide`` and ``image``."""
    registry.add(
        "tiff",
        TiffSlideReader(),
        summary="tiled or pyramidal TIFF (generic, SVS, NDPI) read tile by tile with tifffile",
    )
    registry.add(
        "openslide",
        OpenSlideReader(),
        summary="vendor slides (SVS, NDPI, MRXS, SCN, Philips TIFF...) read with OpenSlide "
        "(breastcls[slides])",
    )
    registry.add(
        "image", ImageSlideReader(), summary="large flat PNG or JPEG images, decoded whole"
    )
