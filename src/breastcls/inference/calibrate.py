"""``breastcls calibrate``: fit a model's temperature and thresholds for a TTA, explicitly.

Training fits the calibration of plain predictions on its selection set. A TTA averages the
model's outputs over transformed copies, and a temperature fitted on plain predictions does not
fit averaged ones, so each TTA gets its own, fitted here on the same selection set and kept in
the model record. This is the only step after training that writes into a run folder;
``predict``, ``evaluate`` and ``slide predict`` read the record and never fit anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from breastcls.data.images import ImageInfo
from breastcls.environment import prepare_tensorflow
from breastcls.errors import ConfigError
from breastcls.inference.calibration import Calibration, fit_calibration
from breastcls.inference.model import InferenceModel
from breastcls.inference.record import write_record
from breastcls.interfaces import DataRole, Predictions, Sample
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.folder import read_split_csv
from breastcls.runs.lock import lock_folder

__all__ = ["calibrate", "fit_selection_calibration"]


def fit_selection_calibration(
    model: InferenceModel,
    selection: Sequence[Sample],
    *,
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 0,
    image_info: Mapping[Path, ImageInfo] | None = None,
) -> tuple[Calibration, Predictions]:
    """Fit the calibration of ``tta`` on the model's raw predictions of the selection set.

    Returns:
        The calibration, and the selection set's raw predictions it was fitted on.

    Raises:
        ValueError: ``selection`` is empty.
        DataError: A selection image is unreadable or of a class the model does not know.
    """
    if not selection:
        raise ValueError("A calibration is fitted on the selection set, and it is empty.")
    raw_model = model.without_calibration()
    scores = raw_model.score_files(
        selection,
        tta=tta,
        batch_size=batch_size,
        host=host,
        verbose=verbose,
        image_info=image_info,
    )
    predictions = raw_model.labelled(selection, scores, role=DataRole.SELECTION)
    return fit_calibration(predictions, tta=tta), predictions


def calibrate(
    run: Path,
    *,
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 0,
) -> Calibration:
    """Fit the temperature and thresholds of predictions made with ``tta`` on the run's
    selection set, and keep them in the run's model record (replacing an earlier fit for
    ``tta``).

    Args:
        run: A run folder (it holds ``split.csv``, which names the selection set).
        tta: Test-time augmentation id.
        batch_size: Images per model call (TTA multiplies it by the number of copies).
        host: Plugin host (the default host when ``None``).
        verbose: 1 shows progress.

    Returns:
        The calibration fitted, with the number of selection images and patients.

    Raises:
        BreastclsError: Unknown TTA, a model that cannot be loaded, a folder without a selection
            set (an export or a bare model file), unreadable selection images, or a run folder
            another process holds or that cannot be written.
    """
    prepare_tensorflow()
    host = ensure_host(host)
    host.tta.info(tta)
    model = InferenceModel.load(Path(run))
    folder = model.folder
    selection = [
        sample
        for sample, _ in (read_split_csv(folder.path) if folder.split.is_file() else [])
        if sample.split == DataRole.SELECTION.value
    ]
    if not selection:
        raise ConfigError(
            f"{folder.path} names no selection set (no split.csv, or none in it): a calibration "
            "is fitted on a run's selection set; calibrate the run folder the model came from."
        )
    with lock_folder(
        folder.path,
        purpose="calibrate",
        hint="wait for that process to end, then calibrate again.",
    ):
        calibration, _ = fit_selection_calibration(
            model, selection, tta=tta, batch_size=batch_size, host=host, verbose=verbose
        )
        write_record(folder.path, model.record.with_calibration(calibration))
    return calibration
