"""What breastcls sets in the process before TensorFlow starts, and when.

Importing breastcls changes nothing in the process. The entry points that start TensorFlow work
on a user's behalf (the ``breastcls`` command, :func:`breastcls.train`, :func:`breastcls.resume`,
:func:`breastcls.cross_validate`, :func:`breastcls.evaluate` and :func:`breastcls.predict`) call
:func:`prepare_tensorflow` first; a script that imports TensorFlow itself keeps TensorFlow's
defaults unless it calls :func:`prepare_tensorflow` before that import.
"""

from __future__ import annotations

import os
import sys

__all__ = ["BFC_ALLOCATOR", "prepare_tensorflow"]

BFC_ALLOCATOR = "TF_CPU_ALLOCATOR_USE_BFC"
"""TensorFlow's switch for its BFC CPU allocator, read once, when TensorFlow creates a device."""


def prepare_tensorflow() -> bool:
    """Select TensorFlow's BFC CPU allocator unless TensorFlow has started or the user chose.

    The BFC allocator makes CPU training steps steadier and faster (see the performance guide).
    TensorFlow reads the setting when it creates its first device, so it is only set while
    TensorFlow is not yet imported; a value the user has set wins.

    Returns:
        Whether this call set the variable.
    """
    if "tensorflow" in sys.modules or BFC_ALLOCATOR in os.environ:
        return False
    os.environ[BFC_ALLOCATOR] = "true"
    return True
