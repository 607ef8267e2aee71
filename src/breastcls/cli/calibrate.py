"""``breastcls calibrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors, say


@reports_errors
def calibrate_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="The run folder.")],
    tta: Annotated[
        str,
        typer.Option(
            metavar="<id>", help="Test-time augmentation: none, flips (4 copies) or d8 (8)."
        ),
    ] = "none",
    domain: Annotated[
        bool,
        typer.Option(
            "--domain",
            help="Also fit the domain-shift reference (training images; thresholds on the "
            "selection set), for runs trained before it existed.",
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 32,
) -> None:
    """Fit the temperature and thresholds of a TTA on the run's selection set, into its record."""
    import breastcls

    calibration = breastcls.calibrate(run, tta=tta, domain=domain, batch_size=batch_size, verbose=1)
    say(calibration.describe())
    for note in calibration.notes:
        say(f"note: {note}")
    if domain:
        from breastcls.inference.record import read_record

        record = read_record(Path(run))
        if record is not None and record.domain is not None:
            say(record.domain.describe())
    say(f"kept in {Path(run) / 'model_record.json'}")
