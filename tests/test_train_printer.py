"""``breastcls.train`` in Python speaks like ``breastcls train``: the start summary and one line
per epoch on stderr, no Keras progress bar, nothing with ``quiet=True``; a learning-rate drop in
breastcls's words, not Keras'; ``help(breastcls)`` is a short overview."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _runs import read_history, run_cli, run_watched, tiny_train_options
from conftest import copy_patients

# Two runs in one process (TensorFlow starts once): as the API speaks by default, then quiet,
# with a mark on stderr between them.
_TRAIN = """
import sys
from pathlib import Path
import breastcls
data = Path(sys.argv[1])
for name, epochs in (("spoken", 2), ("quiet", 1)):
    config = breastcls.RunConfig(
        data=breastcls.DataConfig(path=data, image_size=32, selection_fraction=0.4),
        model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
        train=breastcls.TrainConfig(epochs=epochs, batch_size=8),
        out_dir=data.parent / "runs",
        name=name,
    )
    breastcls.train(config, quiet=name == "quiet")
    print("--- quiet from here", file=sys.stderr, flush=True)
print("--- cross-validation from here", file=sys.stderr, flush=True)
folds = breastcls.RunConfig(
    data=breastcls.DataConfig(
        path=Path(sys.argv[2]), image_size=32, folds=2, selection_fraction=0.5
    ),
    model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
    train=breastcls.TrainConfig(epochs=1, batch_size=8),
    out_dir=data.parent / "runs",
    name="folds",
)
breastcls.cross_validate(folds)
"""


def test_python_training_prints_the_cli_lines_and_no_keras_bars(
    tmp_path: Path, breakhis_dev: Path
) -> None:
    data = copy_patients(breakhis_dev, tmp_path / "data", patients=5, images_per_patient=2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Two folds need more patients: eight per class, one image each.
    folds = copy_patients(breakhis_dev, tmp_path / "folds", patients=8, images_per_patient=1)
    ran = run_watched([sys.executable, "-c", _TRAIN, str(data), str(folds)], env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    trained, crossvalidated = ran.stderr.split("--- cross-validation from here\n")
    spoken, quiet, end = trained.split("--- quiet from here\n")
    assert quiet == end == "" and ran.stdout == ""
    assert (data.parent / "runs" / "quiet" / "report.html").is_file()
    lines = spoken.splitlines()
    assert lines[0].startswith("training smallcnn + seed head on CPU: ")
    assert lines[1].startswith("data: train ")
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("; selection set: loss " in line for line in epochs)
    # No Keras bar (its "\r" redraws, "━" bars, "val_" names, "step" counts) anywhere.
    for keras_mark in ("\r", "\x1b[", "━", "val_", "/step"):
        assert keras_mark not in spoken, keras_mark
        assert keras_mark not in crossvalidated, keras_mark
    # breastcls.cross_validate speaks the same way: each fold's epoch line.
    fold_lines = crossvalidated.splitlines()
    fold_epochs = [line.split(":")[0] for line in fold_lines if line.startswith("epoch 1/1: ")]
    assert fold_epochs == ["epoch 1/1", "epoch 1/1"]


def test_help_on_the_package_is_a_short_overview() -> None:
    code = "import breastcls, pydoc; print(pydoc.render_doc(breastcls, renderer=pydoc.plaintext))"
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    lines = shown.splitlines()
    assert len(lines) < 300, len(lines)
    assert "train(" in shown and "load_model" in shown
    # Every name a first project needs is still importable from the package.
    import breastcls

    for name in breastcls.__all__:
        assert getattr(breastcls, name) is not None, name


def test_a_learning_rate_drop_is_said_in_breastcls_words_after_its_epoch(
    tmp_path: Path, small_breakhis: Path
) -> None:
    log = tmp_path / "train.log"
    args = [
        "train", "--data", str(small_breakhis), *tiny_train_options(3),
        "--trainer-option", "lr_patience=1", "--out", str(tmp_path / "runs"), "--name", "drops",
    ]  # fmt: skip
    code = run_cli(args, log)
    output = log.read_text(encoding="utf-8")
    assert code == 0, output[-3000:]
    assert "ReduceLROnPlateau" not in output and "reducing learning rate" not in output
    # The rate each epoch trained with, then the one the schedule left after the last.
    run = tmp_path / "runs" / "drops"
    rates = [row["learning_rate"] for row in read_history(run)]
    state = json.loads((run / "train_state.json").read_text(encoding="utf-8"))
    rates.append(state["trainer"]["reduce_lr_on_plateau"]["learning_rate"])
    dropped_after = [epoch for epoch in range(1, 4) if rates[epoch] < rates[epoch - 1]]
    assert dropped_after, f"no drop in 3 epochs with lr_patience=1: {rates}"
    lines = output.splitlines()
    said = [i for i, line in enumerate(lines) if line.startswith("learning rate ")]
    assert [lines[i - 1].split(":")[0] for i in said] == [f"epoch {e}/3" for e in dropped_after]
    # tiny_train_options' 3e-3, times the keras trainer's lr_factor of 0.2.
    assert lines[said[0]] == (
        "learning rate 3e-03 → 6e-04 (no better selection accuracy for 1 epoch)"
    )
    assert rates[dropped_after[0]] == pytest.approx(6e-4)
