"""The example plugin packages in examples/ install like any third-party plugin, are listed by
``breastcls plugins``, pass their own test suites (breastcls.testing) and train with breastcls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("breastcls-resnet50", "breastcls-metric-example")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both example packages installed into a private folder (put on PYTHONPATH)."""
    root = tmp_path_factory.mktemp("examples")
    sources = []
    for name in EXAMPLES:  # built from copies: nothing is written into the working tree
        shutil.copytree(REPO / "examples" / name, root / "src" / name)
        sources.append(str(root / "src" / name))
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *sources,
        ],
        check=True,
        capture_output=True,
    )
    return target


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    )
    env.pop("BREASTCLS_DISABLE_PLUGINS", None)
    env.update(PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _breastcls(site: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from breastcls.cli.app import main; main()", *args]
    return subprocess.run(command, env=_env(site, **extra), capture_output=True, text=True)


def test_breastcls_plugins_lists_both_examples(site: Path) -> None:
    # Wide enough that no cell wraps: the rows are compared word by word.
    result = _breastcls(site, "plugins", COLUMNS="200")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["backbone", "resnet50", "resnet50", "breastcls-resnet50", "0.1.0"] in [
        row[:5] for row in rows
    ]
    assert ["metric", "agreement", "metric_example", "breastcls-metric-example", "0.1.0"] in [
        row[:5] for row in rows
    ]


def test_an_example_is_disabled_by_name(site: Path) -> None:
    result = _breastcls(site, "plugins", BREASTCLS_DISABLE_PLUGINS="resnet50")
    assert result.returncode == 0, result.stderr
    assert "resnet50" not in result.stdout
    assert "agreement" in result.stdout


@pytest.mark.slow
def test_the_examples_pass_their_own_tests(site: Path) -> None:
    tests = [str(site.parent / "src" / name / "tests") for name in EXAMPLES]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        env=_env(site),
        capture_output=True,
        text=True,
        cwd=site.parent,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "6 passed" in result.stdout


@pytest.mark.slow
def test_train_and_evaluate_with_resnet50_and_the_metric_plugin(
    site: Path, small_breakhis: Path, tmp_path: Path
) -> None:
    tracking = tmp_path / "tracking.jsonl"
    result = _breastcls(
        site, "train", "--data", str(small_breakhis), "--backbone", "resnet50",
        "--weights", "none", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
        "--augmentation", "none", "--selection-fraction", "0.34",
        "--out", str(tmp_path / "runs"), "--name", "r50",
        BREASTCLS_TRACKING_FILE=str(tracking),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "r50"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["backbone"] == "resnet50"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    agreement = metrics["agreement"]
    assert set(agreement) == {"matthews_corrcoef", "cohen_kappa"}
    assert all(-1.0 <= value <= 1.0 for value in agreement.values())
    events = [json.loads(line) for line in tracking.read_text().splitlines()]
    assert [event["event"] for event in events] == ["train_start", "epoch_end", "train_end"]
    assert events[0]["model"]["backbone"] == "resnet50"
    assert events[1]["epoch"] == 0 and "val_accuracy" in events[1]["logs"]
    assert events[2]["accuracy"] == metrics["classification"]["accuracy"]
    assert events[2]["agreement"] == agreement

    # The run's own data trained and selected the model: evaluate scores it only when told to.
    evaluation = tmp_path / "evaluation"
    result = _breastcls(
        site, "evaluate", str(run_dir), "--data", str(small_breakhis),
        "--out", str(evaluation), "--no-gradcam",
    )  # fmt: skip
    assert result.returncode == 2 and "--allow-overlap" in result.stderr
    result = _breastcls(
        site, "evaluate", str(run_dir), "--data", str(small_breakhis),
        "--out", str(evaluation), "--no-gradcam", "--allow-overlap",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((evaluation / "metrics.json").read_text())
    assert evaluated["evaluated_on"]["set"].startswith("overlapping data")
    assert set(evaluated["agreement"]) == {"matthews_corrcoef", "cohen_kappa"}
    assert "Agreement beyond chance" in (evaluation / "report.html").read_text()
