"""What breastcls sets in the process before TensorFlow starts, and when.

Importing breastcls changes nothing in the process. The entry points that start TensorFlow work
on a user's behalf (the ``breastcls`` command, :func:`breastcls.train`, :func:`breastcls.resume`,
:func:`breastcls.cross_validate`, :func:`breastcls.evaluate` and :func:`breastcls.predict`) call
:func:`prepare_tensorflow` first; a script that imports TensorFlow itself keeps TensorFlow's
defaults unless it calls :func:`prepare_tensorflow` before that import. :func:`cpu_name` names
the processor that speed measurements were made on. :func:`native_stderr_without` keeps the
known chatter of native libraries, which Python's logging cannot reach, off stderr.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["BFC_ALLOCATOR", "cpu_name", "native_stderr_without", "prepare_tensorflow"]

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


_STDERR = 2
_REDIRECTING = threading.RLock()  # descriptor 2 is the whole process's: one block at a time


@contextlib.contextmanager
def native_stderr_without(*known: str) -> Iterator[None]:
    """Inside the block, leave out of stderr the lines that contain one of ``known``.

    Native code (TensorFlow Lite's ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``)
    writes to file descriptor 2 itself, out of reach of Python's logging and of
    ``sys.stderr``: the block points descriptor 2 at a temporary file, and on leaving it points
    it back and writes the other lines (real errors, the block's own messages) to stderr.
    Without a usable descriptor 2 (a process started with stderr closed) nothing is redirected.

    Args:
        known: Texts of the lines to leave out.
    """
    with _REDIRECTING, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        try:
            saved = os.dup(_STDERR)
        except OSError:
            yield
            return
        os.dup2(captured.fileno(), _STDERR)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, _STDERR)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if not any(text in line for text in known)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
