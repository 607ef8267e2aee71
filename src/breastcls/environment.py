"""What breastcls sets in the process before TensorFlow starts, and when.

Importing breastcls changes nothing in the process. The entry points that start TensorFlow work
on a user's behalf (the ``breastcls`` command, :func:`breastcls.train`, :func:`breastcls.resume`,
:func:`breastcls.cross_validate`, :func:`breastcls.evaluate` and :func:`breastcls.predict`) call
:func:`prepare_tensorflow` first; a script that imports TensorFlow itself keeps TensorFlow's
defaults unless it calls :func:`prepare_tensorflow` before that import. :func:`cpu_name` names
the processor that speed measurements were made on.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

__all__ = ["BFC_ALLOCATOR", "cpu_name", "prepare_tensorflow"]

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


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (or the machine type elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()
