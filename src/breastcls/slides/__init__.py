"""Whole-slide images: slide readers (a plugin kind), tissue detection, model-scale tiling.

:func:`breastcls.predict_slide` (in :mod:`breastcls.slides.job`) runs a trained model over a
slide, with the options of a :class:`SlideJobOptions`; ``breastcls slide predict`` does it for
many slides (:mod:`breastcls.slides.collection`). The readers' contract
(:class:`~breastcls.interfaces.SlideReader`, :class:`~breastcls.interfaces.Slide`) lives in the
core and is re-exported here. This package's top level imports neither TensorFlow nor the job
module.
"""

from breastcls.slides.options import SlideJob, SlideJobOptions
from breastcls.slides.readers import (
    GLASS,
    ImageSlideReader,
    OpenSlideReader,
    Slide,
    SlideLevel,
    SlideReader,
    TiffSlideReader,
)

__all__ = [
    "GLASS",
    "ImageSlideReader",
    "OpenSlideReader",
    "Slide",
    "SlideJob",
    "SlideJobOptions",
    "SlideLevel",
    "SlideReader",
    "TiffSlideReader",
]
