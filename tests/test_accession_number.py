"""BreakHis accession numbers: slide ids that differ only by their letters share one."""

from __future__ import annotations

import pytest

from breastcls.data import breakhis
from breastcls.data.breakhis import accession_number, parse_breakhis_name


@pytest.mark.parametrize(
    ("patient_id", "accession"),
    [
        ("14-18842D", "14-18842"),
        ("14-18842", "14-18842"),
        ("14-29960AB", "14-29960"),
        ("14-29960CD", "14-29960"),
        ("14-23060AB", "14-23060"),
        ("15-190EF", "15-190"),
        ("14-2523", "14-2523"),
    ],
)
def test_breakhis_ids_lose_their_slide_letters(patient_id: str, accession: str) -> None:
    assert accession_number(patient_id) == accession


@pytest.mark.parametrize(
    "patient_id", ["patient-7", "P012", "14-123ab", "14-12A3", "A-14-1", "14-", "", "1418842D"]
)
def test_other_ids_are_returned_unchanged(patient_id: str) -> None:
    assert accession_number(patient_id) == patient_id


def test_accession_of_a_parsed_file_name() -> None:
    parsed = parse_breakhis_name("SOB_M_MC-14-18842D-200-001.png")
    assert parsed is not None and accession_number(parsed.patient_id) == "14-18842"


def test_accession_number_is_public() -> None:
    assert "accession_number" in breakhis.__all__
