"""The test-look ledger: every look is numbered per test set, none is lost when evaluations
run at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from breastcls.runs.folder import RunFolder, append_test_look, read_test_looks


def test_looks_are_numbered_per_test_set(tmp_path: Path) -> None:
    evaluation = tmp_path / "evaluations" / "test-none"
    assert read_test_looks(tmp_path) == []
    first = append_test_look(
        tmp_path, data="split.csv", tta="none", options={}, evaluation=evaluation
    )
    second = append_test_look(
        tmp_path, data="split.csv", tta="d8", options={"stain_shift": "hed"}, evaluation=evaluation
    )
    other = append_test_look(tmp_path, data="/data/x", tta="none", options={}, evaluation=tmp_path)
    assert (first, second, other) == (1, 2, 1)
    records = read_test_looks(tmp_path)
    assert [(r["look"], r["data"], r["tta"]) for r in records] == [
        (1, "split.csv", "none"),
        (2, "split.csv", "d8"),
        (1, "/data/x", "none"),
    ]
    assert records[1]["options"] == {"stain_shift": "hed"}
    assert records[0]["evaluation"] == str(evaluation) and records[0]["when"].startswith("20")


def test_a_line_cut_short_by_a_crash_is_passed_over(tmp_path: Path) -> None:
    append_test_look(tmp_path, data="split.csv", tta="none", options={}, evaluation=tmp_path)
    with RunFolder(tmp_path).test_looks.open("a", encoding="utf-8") as handle:
        handle.write('{"look": 2, "wh')
    assert [r["look"] for r in read_test_looks(tmp_path)] == [1]


def _append_many(folder: str, start: Any, count: int) -> None:
    start.wait()
    for _ in range(count):
        append_test_look(
            Path(folder), data="split.csv", tta="none", options={}, evaluation=Path(folder)
        )


def test_concurrent_evaluations_lose_no_look(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_append_many, args=(str(tmp_path), start, 25)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    looks = sorted(record["look"] for record in read_test_looks(tmp_path))
    assert looks == list(range(1, 101))


def test_a_look_that_cannot_be_recorded_says_so(tmp_path: Path) -> None:
    from breastcls.evaluation.looks import record_test_look

    not_a_folder = tmp_path / "model.keras"
    not_a_folder.write_text("")
    described = record_test_look(
        not_a_folder, "test set", data=None, tta="none", options={}, evaluation=tmp_path
    )
    assert described.startswith("test set (look not counted: Cannot record the test look in ")
    assert (
        record_test_look(
            tmp_path, "test set", data=None, tta="none", options={}, evaluation=tmp_path
        )
        == "test set (look 1 of this test set)"
    )


def test_the_look_goes_before_a_leak_label() -> None:
    from breastcls.evaluation.looks import look_description

    leaky = "test set, LEAKY: 6 of 6 test patients also trained or selected (optimistic)"
    assert look_description(leaky, 2) == (
        "test set (look 2 of this test set), "
        "LEAKY: 6 of 6 test patients also trained or selected (optimistic)"
    )
