"""Training with the data options of issue 3: class weights, magnification, leaky splits, the
data check recorded in the run folder, and k-fold cross-validation (smallcnn, tiny images)."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastcls.cli.app import app

runner = CliRunner()
TINY = [
    "--backbone", "smallcnn", "--weights", "none", "--image-size", "32", "--epochs", "1",
    "--batch-size", "8", "--learning-rate", "3e-3",
]  # fmt: skip


def _subset(breakhis_dev: Path, root: Path, patients: dict[str, int], per_patient: int) -> Path:
    """A manifest over a few real patients, their images copied beside it (a manifest may not
    reach out of its folder, through a symbolic link either)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = (breakhis_dev / "manifest.csv").read_text(encoding="utf-8").splitlines()
    taken: dict[str, int] = Counter()
    chosen: dict[str, set[str]] = {label: set() for label in patients}
    lines = [rows[0]]
    for row in rows[1:]:
        _, label, patient = row.split(",")[:3]
        if patient not in chosen[label] and len(chosen[label]) == patients[label]:
            continue
        if taken[patient] == per_patient:
            continue
        chosen[label].add(patient)
        taken[patient] += 1
        lines.append(row)
    for line in lines[1:]:
        relative = line.split(",")[0]
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(breakhis_dev / relative, root / relative)
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def _split_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "split.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _disjoint(rows: list[dict[str, str]]) -> bool:
    """Whether every role has images and no group (accession number) is in two roles."""
    assert {r["role"] for r in rows} <= {"train", "selection", "test"}
    train, selection, test = (
        {r["group"] for r in rows if r["role"] == role} for role in ("train", "selection", "test")
    )
    return (
        bool(train and selection and test)
        and not train & selection
        and not train & test
        and not selection & test
    )


def test_balanced_class_weights_and_magnification_are_recorded(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    manifest = _subset(breakhis_dev, tmp_path / "d", {"benign": 6, "malignant": 12}, 3)
    result = runner.invoke(app, [
        "train", "--data", str(manifest), *TINY, "--class-weight", "balanced",
        "--magnification", "200", "--out", str(tmp_path), "--name", "weighted",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = tmp_path / "weighted"
    config = json.loads((run / "config.json").read_text())
    rows = _split_rows(run)
    assert {r["magnification"] for r in rows} == {"200"}
    assert _disjoint(rows) and config["split"]["method"] == "patient"
    # The group is the accession number (the patient id without slide letters).
    assert {r["group"] for r in rows} == {r["patient_id"].rstrip("ABCDEF") for r in rows}
    counts = Counter(r["label"] for r in rows if r["role"] == "train")
    total = sum(counts.values())
    expected = {label: total / (2 * counts[label]) for label in ("benign", "malignant")}
    assert config["class_weights_used"] == pytest.approx(expected)
    assert config["class_weights_used"]["benign"] > 1.0 > config["class_weights_used"]["malignant"]
    assert config["data"]["magnification"] == 200 and config["train"]["class_weight"] == "balanced"
    check = json.loads((run / "data_check.json").read_text())
    assert check["ok"] is True and check["n_images"] == len(rows)


def test_leaky_split_bad_files_and_the_recorded_data_check(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    manifest = _subset(breakhis_dev, tmp_path / "d", {"benign": 4, "malignant": 4}, 4)
    (manifest.parent / "broken.png").write_bytes(b"")
    with manifest.open("a", encoding="utf-8") as handle:
        handle.write("broken.png,benign,14-0000,F,200\n")
    base = ["train", "--data", str(manifest), *TINY, "--out", str(tmp_path), "--split-by", "image"]
    unreadable = runner.invoke(app, [*base, "--allow-leaky-split", "--name", "stopped"])
    assert unreadable.exit_code == 2
    assert "1 unreadable image(s)" in unreadable.output
    assert "broken.png: empty file (0 bytes); remove it or copy it again. Fix or remove" in (
        unreadable.output
    )
    refused = runner.invoke(app, [*base, "--skip-bad-images", "--name", "refused"])
    assert refused.exit_code == 2
    assert "an image-level split would put one patient on both sides" in refused.output
    assert not (tmp_path / "stopped").exists() and not (tmp_path / "refused").exists()
    result = runner.invoke(
        app, [*base, "--allow-leaky-split", "--skip-bad-images", "--name", "leaky"]
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "leaky"
    config = json.loads((run / "config.json").read_text())
    # 32 readable images: 7 (20%) held out as the test set, 5 (20% of 25) as the selection set.
    assert config["split"] == {
        "method": "image-leaky",
        "test_from": "split",
        "leaky": True,
        "leak": "LEAKY: 6 of 6 test patients also trained or selected (optimistic)",
        "train_images": 20,
        "selection_images": 5,
        "test_images": 7,
        "train_patients": 7,
        "selection_patients": 4,
        "test_patients": 6,
    }
    # --split-by image --allow-leaky-split: every figure says so (issue 25 #1).
    evaluated_on = json.loads((run / "metrics.json").read_text())["evaluated_on"]
    assert evaluated_on["leak"] == config["split"]["leak"]
    assert config["split"]["leak"] in result.output
    selection = json.loads((run / "selection" / "metrics.json").read_text())["evaluated_on"]
    assert selection["leak"] is not None and selection["leak"].startswith("LEAKY: ")
    assert config["data"]["allow_leaky_split"] is True
    with open(run / "skipped.csv", encoding="utf-8") as handle:
        skipped = list(csv.DictReader(handle))
    assert [(Path(r["path"]).name, r["reason"]) for r in skipped] == [
        ("broken.png", "empty file (0 bytes); remove it or copy it again.")
    ]
    check = json.loads((run / "data_check.json").read_text())
    leaked = check["patients_in_several_splits"]
    assert leaked and not _disjoint(_split_rows(run))
    kinds = Counter(issue["kind"] for issue in check["issues"])
    # An image-level split also scatters the slides of one accession (14-23060AB/CD) over roles.
    siblings = check["accessions_in_several_roles"]
    assert kinds == {
        "unreadable": 1,
        "patient-in-several-splits": len(leaked),
        **({"accession-in-several-roles": len(siblings)} if siblings else {}),
    }


@pytest.mark.slow
def test_five_fold_cross_validation_writes_five_runs_and_an_aggregate(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    # Nine benign slides (seven accessions): every fold's test and selection sets get both classes.
    manifest = _subset(breakhis_dev, tmp_path / "d", {"benign": 9, "malignant": 9}, 2)
    n_images = len(manifest.read_text(encoding="utf-8").splitlines()) - 1
    result = runner.invoke(app, [
        "train", "--data", str(manifest), *TINY, "--folds", "5", "--out", str(tmp_path),
        "--name", "cv",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = tmp_path / "cv"
    folders = sorted(p.name for p in run.iterdir() if p.is_dir())
    assert folders == [*(f"fold-{k}" for k in range(1, 6)), "pooled"]
    aggregate = json.loads((run / "aggregate.json").read_text())
    assert aggregate["scheme"] == "5-fold" and aggregate["leaky"] is False
    assert aggregate["split_methods"] == ["patient"] * 5
    assert aggregate["evaluated_on"].startswith("each fold's test set")
    accuracies = []
    tested: list[str] = []
    for k in range(1, 6):
        fold = run / f"fold-{k}"
        config = json.loads((fold / "config.json").read_text())
        assert (config["data"]["folds"], config["data"]["fold"]) == (5, k)
        rows = _split_rows(fold)
        assert _disjoint(rows)
        assert len(rows) == n_images
        tested += [r["path"] for r in rows if r["role"] == "test"]
        metrics = json.loads((fold / "metrics.json").read_text())
        # Each fold's figures are its test set's: the held-out fold.
        assert metrics["evaluated_on"]["role"] == "test"
        assert metrics["evaluated_on"]["images"] == sum(r["role"] == "test" for r in rows)
        accuracies.append(metrics["classification"]["accuracy"])
    assert len(tested) == len(set(tested)) == n_images  # every image tested exactly once
    summary = aggregate["metrics"]["classification.accuracy"]
    assert summary["values"] == pytest.approx(accuracies)
    assert summary["mean"] == pytest.approx(statistics.mean(accuracies))
    assert summary["std"] == pytest.approx(statistics.stdev(accuracies))
    assert summary["n"] == 5
    assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
    # The pooled out-of-fold evaluation scores every image once, by the model that never saw it.
    pooled = json.loads((run / "pooled" / "metrics.json").read_text())
    assert pooled["classification"]["n_images"] == n_images
    assert aggregate["pooled"]["metrics"]["classification"] == pooled["classification"]
    assert "test set accuracy over 5 folds: " in result.output and " ± " in result.output
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
