"""What every conformance check shares: the error it raises, a work folder, and the save-and-reload
round trip.

The checks of each plugin kind use these (:mod:`breastcls.testing.checks`,
:mod:`breastcls.testing.slide_checks`, :mod:`breastcls.testing.stain_checks`); a plugin author
can use them to write checks of the same shape.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

__all__ = ["TOLERANCE", "ConformanceError", "fail", "same_predictions", "work_folder"]

TOLERANCE = 1e-5
"""The largest difference a reloaded model's predictions may show against the original's."""


class ConformanceError(AssertionError):
    """A component does not do what its kind promises (the message says what and why)."""


def fail(what: str, problem: str) -> NoReturn:
    """Raise a :class:`ConformanceError` saying ``what`` breaks its contract and how."""
    raise ConformanceError(f"{what}: {problem}")


@contextlib.contextmanager
def work_folder(folder: Path | None) -> Iterator[Path]:
    """Yield ``folder`` (created when missing), or a temporary folder removed afterwards."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="breastcls-conformance-") as temporary:
        yield Path(temporary)


def same_predictions(what: str, model: Any, path: Path, inputs: npt.NDArray[Any]) -> None:
    """Save ``model`` as ``.keras`` at ``path``, reload it in safe mode and compare predictions.

    Raises:
        ConformanceError: The model does not survive the round trip, or predicts differently
            (by more than :data:`TOLERANCE`) after it.
    """
    from breastcls.errors import ModelLoadError
    from breastcls.model import load_keras_model

    before = np.asarray(model.predict(inputs, verbose=0))
    try:
        model.save(path)
        loaded = load_keras_model(path)
    except (ModelLoadError, TypeError, ValueError) as error:
        fail(
            what,
            f"does not survive a .keras save and safe-mode load ({type(error).__name__}: "
            f"{error}); register custom layers with keras.saving.register_keras_serializable "
            "and never use Lambda layers.",
        )
    after = np.asarray(loaded.predict(inputs, verbose=0))
    difference = float(np.max(np.abs(before - after)))
    if difference > TOLERANCE:
        fail(what, f"the reloaded model predicts differently (max difference {difference:.2e}).")
