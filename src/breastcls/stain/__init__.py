"""Stain normalisation: normalisers (a plugin kind), fitted to a reference and applied inside
the model.

:mod:`breastcls.stain.optics` holds the numbers every stain computation shares (optical
density, the tissue threshold, Macenko's estimate); :mod:`breastcls.stain.normalisers` the
built-in normalisers (no TensorFlow; their contract,
:class:`~breastcls.interfaces.StainNormaliser`, lives in the core and is re-exported here);
:mod:`breastcls.stain.fit` fits one to a reference; :mod:`breastcls.stain.layer` holds the
Keras layers the model carries; :mod:`breastcls.stain.survey` is the stain survey of
``breastcls data check``.
"""

from __future__ import annotations

from breastcls.stain.normalisers import (
    MacenkoNormaliser,
    NoNormaliser,
    ReinhardNormaliser,
    StainNormaliser,
)

__all__ = ["MacenkoNormaliser", "NoNormaliser", "ReinhardNormaliser", "StainNormaliser"]
