"""The old home of :mod:`breastcls.training.distribute`, kept for code that imports it from here."""

from __future__ import annotations

from breastcls.training import distribute as _moved
from breastcls.training.distribute import *  # noqa: F403 (the same public names)

__all__ = _moved.__all__
