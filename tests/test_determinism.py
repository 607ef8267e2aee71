"""``--seed N --deterministic``: two CPU runs give identical histories."""

from __future__ import annotations

from pathlib import Path

from _runs import start_cli, tiny_train_options, wait_for_exit


def test_two_deterministic_runs_with_one_seed_write_identical_histories(
    small_breakhis: Path, tmp_path: Path
) -> None:
    common = ["train", "--data", str(small_breakhis), "--out", str(tmp_path)]
    runs = {
        "first": tiny_train_options(2, seed=7),
        "second": tiny_train_options(2, seed=7),
        "other-seed": tiny_train_options(2, seed=8),
    }
    processes = {
        name: start_cli([*common, "--name", name, *options], tmp_path / f"{name}.log")
        for name, options in runs.items()
    }
    for name, process in processes.items():
        log = tmp_path / f"{name}.log"
        assert wait_for_exit(process, log, tmp_path / name) == 0, log.read_text()
    first = (tmp_path / "first" / "history.csv").read_text()
    assert first.count("\n") == 3
    assert (tmp_path / "second" / "history.csv").read_text() == first
    assert (tmp_path / "second" / "predictions.csv").read_text() == (
        tmp_path / "first" / "predictions.csv"
    ).read_text()
    # The seed matters: another seed gives another history (so the comparison can fail).
    assert (tmp_path / "other-seed" / "history.csv").read_text() != first
