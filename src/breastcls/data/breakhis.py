"""BreakHis file names: ``SOB_<B|M>_<subtype>-<patient id>-<magnification>-<number>.png``."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BENIGN_SUBTYPES",
    "MALIGNANT_SUBTYPES",
    "BreakHisName",
    "accession_number",
    "follows_breakhis_scheme",
    "parse_breakhis_name",
]

BENIGN_SUBTYPES = ("A", "F", "PT", "TA")
MALIGNANT_SUBTYPES = ("DC", "LC", "MC", "PC")
_PATTERN = re.compile(r"^SOB_([BM])_([A-Z]+)-(\d+-[0-9A-Z]+)-(\d+)-(\d+)\.\w+$")
_PATIENT_ID = re.compile(r"^(\d+-\d+)[A-Z]*$")


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


def follows_breakhis_scheme(patient_id: str) -> bool:
    """Whether ``patient_id`` is a BreakHis slide id (``<year>-<digits>`` and slide letters),
    whose :func:`accession_number` names a biopsy.

    Example:
        >>> follows_breakhis_scheme("14-29960AB"), follows_breakhis_scheme("patient-7")
        (True, False)
    """
    return _PATIENT_ID.match(patient_id) is not None


def accession_number(patient_id: str) -> str:
    """Return the accession (biopsy) number of a BreakHis patient id.

    BreakHis ids are ``<year>-<digits>`` followed by optional slide letters. Ids that share the
    digits and differ only by the letters (``14-29960AB`` and ``14-29960CD``, ``14-18842`` and
    ``14-18842D``) are slides of one accession and may come from one person, so they must stay on
    one side of a split. The letters are dropped; an id that does not follow the BreakHis scheme
    (``patient-7``, ``P012``, lower-case letters) is returned unchanged.

    Args:
        patient_id: A patient (slide) id, e.g. from :func:`parse_breakhis_name`.

    Returns:
        The accession number, e.g. ``14-18842`` for ``14-18842D``.

    Example:
        >>> accession_number("14-18842D"), accession_number("15-190EF")
        ('14-18842', '15-190')
        >>> accession_number("14-2523"), accession_number("patient-7")
        ('14-2523', 'patient-7')
    """
    match = _PATIENT_ID.match(patient_id)
    return patient_id if match is None else match.group(1)
