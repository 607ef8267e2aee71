"""BreakHis file names: ``SOB_<B|M>_<subtype>-<patient id>-<magnification>-<number>.png``."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BENIGN_SUBTYPES", "MALIGNANT_SUBTYPES", "BreakHisName", "parse_breakhis_name"]

BENIGN_SUBTYPES = ("A", "F", "PT", "TA")
MALIGNANT_SUBTYPES = ("DC", "LC", "MC", "PC")
_PATTERN = re.compile(r"^SOB_([BM])_([A-Z]+)-(\d+-[0-9A-Z]+)-(\d+)-(\d+)\.\w+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakHisName:
    """The parts of a BreakHis file name."""

    label: str
    subtype: str
    patient_id: str
    magnification: int
    number: int


def parse_breakhis_name(file_name: str) -> BreakHisName | None:
    """Parse a BreakHis file name; return ``None`` when the name does not follow the scheme.

    Example:
        >>> name = parse_breakhis_name("SOB_M_DC-14-2523-40-001.png")
        >>> name.label, name.subtype, name.patient_id, name.magnification
        ('malignant', 'DC', '14-2523', 40)
    """
    match = _PATTERN.match(file_name)
    if match is None:
        return None
    klass, subtype, patient, magnification, number = match.groups()
    return BreakHisName(
        label="benign" if klass == "B" else "malignant",
        subtype=subtype,
        patient_id=patient,
        magnification=int(magnification),
        number=int(number),
    )
