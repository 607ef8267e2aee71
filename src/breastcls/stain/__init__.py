"""Stain normalisation: normalisers (a plugin kind), fitted to a reference and applied inside
the model.

:mod:`breastcls.stain.normalisers` holds the contract and the built-in normalisers (no
TensorFlow); :mod:`breastcls.stain.fit` fits one to a reference; :mod:`breastcls.stain.layer`
holds the Keras layers the model carries.
"""

from __future__ import annotations

from breastcls.stain.normalisers import (
    MacenkoNormaliser,
    NoNormaliser,
    ReinhardNormaliser,
    StainNormaliser,
)

__all__ = ["MacenkoNormaliser", "NoNormaliser", "ReinhardNormaliser", "StainNormaliser"]
