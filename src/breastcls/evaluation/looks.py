"""Looks at a test set: every evaluation of a test set is recorded in the model's ledger, and its
figures say which look they are.

A test figure estimates performance on new patients only the first time it is looked at: a
second TTA, another stain option or a retrained model chosen because its test figure was better
all make the test set a selection set. The ledger (``test_looks.jsonl``,
:func:`~breastcls.runs.folder.append_test_look`) keeps every look, and each report, each
``metrics.json`` and ``breastcls runs`` show the count.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from breastcls.errors import OutputError
from breastcls.evaluation.metrics import LEAK_MARK
from breastcls.runs.folder import append_test_look

__all__ = ["RUN_TEST_SET", "look_description", "record_test_look"]

#: The ledger's name for a run's own test set (the images ``split.csv`` gives the test role).
RUN_TEST_SET = "split.csv"


def look_description(description: str, look: int) -> str:
    """``description`` with the look it is: ``test set (look 2 of this test set)``; before a
    ``LEAKY: ...`` label, which stays last (``metrics.json``'s ``leak`` is read from there)."""
    head, mark, label = description.partition(LEAK_MARK)
    looked = f"{head.rstrip(', ')} (look {look} of this test set)"
    return f"{looked}, {mark}{label}" if mark else looked


def record_test_look(
    model_dir: Path,
    description: str,
    *,
    data: Path | None,
    tta: str,
    options: Mapping[str, Any],
    evaluation: Path,
) -> str:
    """Record one look at a test set in ``model_dir``'s ledger; return ``description`` with
    its look number (or saying the look could not be counted: a read-only model folder).

    Args:
        model_dir: The model's run folder (its ledger).
        description: How the set is named (``test set``...).
        data: The evaluated data (``None``: the run's own test set).
        tta: The test-time augmentation.
        options: Other settings that change the figures (stain options...).
        evaluation: The folder the evaluation writes.
    """
    key = RUN_TEST_SET if data is None else str(Path(data).resolve())
    try:
        look = append_test_look(
            model_dir, data=key, tta=tta, options=options, evaluation=evaluation
        )
    except OutputError as error:
        # A model folder shared read-only can still be evaluated (into --out), but its figures
        # must not pass for a first look.
        return f"{description} (look not counted: {error})"
    return look_description(description, look)
