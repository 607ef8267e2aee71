"""The public face: a curated ``breastcls`` namespace, documented sub-namespaces, and an import
that changes nothing in the process."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import breastcls
from breastcls.environment import BFC_ALLOCATOR

# Names that left the top level, and the module that keeps them.
MOVED = {
    "ENTRY_POINT_GROUP": "breastcls.plugins.host",
    "PluginHost": "breastcls.plugins",
    "default_host": "breastcls.plugins",
    "Registry": "breastcls.registry",
    "ComponentInfo": "breastcls.registry",
    "TTA": "breastcls.interfaces",
    "BackboneFactory": "breastcls.interfaces",
    "BackbonePreprocessing": "breastcls.interfaces",
    "DatasetFormat": "breastcls.interfaces",
    "MetricSection": "breastcls.interfaces",
    "Predictions": "breastcls.interfaces",
    "Sample": "breastcls.interfaces",
    "SkippedFile": "breastcls.interfaces",
    "BreakHisName": "breastcls.data.breakhis",
    "parse_breakhis_name": "breastcls.data.breakhis",
    "DataIssue": "breastcls.data.check",
    "DataReport": "breastcls.data.check",
    "DuplicateGroup": "breastcls.data.check",
    "decode_image": "breastcls.data.images",
    "ManifestFormat": "breastcls.data.manifest",
    "read_manifest": "breastcls.data.manifest",
    "Split": "breastcls.data.split",
    "split_samples": "breastcls.data.split",
    "kfold_splits": "breastcls.data.split",
    "spanhol_splits": "breastcls.data.split",
    "WorkerRole": "breastcls.distribute",
    "select_strategy": "breastcls.distribute",
    "worker_role": "breastcls.distribute",
    "ExportResult": "breastcls.export",
    "build_model": "breastcls.model",
    "write_model_card": "breastcls.model_card",
    "RunSummary": "breastcls.runs",
    "ConfigRecord": "breastcls.records",
    "EpochRecord": "breastcls.records",
    "MetricsRecord": "breastcls.records",
    "list_runs": "breastcls.runs",
}
FIRST_PAGE = {
    "train",
    "resume",
    "cross_validate",
    "evaluate",
    "predict",
    "build_report",
    "load_model",
    "export_model",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    "RunResult",
    "EvaluationResult",
    "PredictResult",
    "CrossValidationResult",
    "list_backbones",
    "list_components",
    "hookimpl",
    "PluginRegistry",
    "KerasBackbone",
    "Backbone",
    "Head",
    "Augmentation",
    "Trainer",
    "Metric",
    "Dataset",
    "DataRole",
    "BreastclsError",
    "ConfigError",
    "DataError",
    "check_data",
    "load_dataset",
    "demo_config",
    "__version__",
}


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != BFC_ALLOCATOR}


def _run(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_clean_env() if env is None else env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_top_level_is_curated() -> None:
    names = set(breastcls.__all__)
    assert names >= FIRST_PAGE
    assert len(names) <= 50
    assert not names & set(MOVED)
    for name in names:
        assert getattr(breastcls, name) is not None


@pytest.mark.parametrize(("name", "module"), sorted(MOVED.items()))
def test_the_rest_lives_in_a_named_sub_namespace(name: str, module: str) -> None:
    assert name in importlib.import_module(module).__all__
    assert not hasattr(breastcls, name) or name not in breastcls.__all__


def test_importing_breastcls_leaves_the_environment_unchanged() -> None:
    code = (
        "import json, os; before = dict(os.environ); import breastcls; "
        "print(json.dumps(dict(os.environ) == before))"
    )
    assert json.loads(_run(code)) is True


def test_the_command_line_selects_the_bfc_allocator() -> None:
    code = (
        "import os, sys; sys.argv = ['breastcls', '--version']\n"
        "from breastcls.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(os.environ.get({BFC_ALLOCATOR!r}))"
    )
    assert _run(code) == "true"


@pytest.mark.parametrize(
    "call",
    [
        "breastcls.train(breastcls.RunConfig(data=breastcls.DataConfig(path=Path('nowhere'))))",
        "breastcls.evaluate(Path('nowhere'))",
        "breastcls.predict(Path('nowhere'), [Path('nothing.png')])",
    ],
)
def test_training_and_inference_select_the_bfc_allocator_before_tensorflow_starts(
    call: str,
) -> None:
    code = (
        "import os; from pathlib import Path; import breastcls\n"
        f"try:\n    {call}\nexcept breastcls.BreastclsError:\n    pass\n"
        f"print(os.environ.get({BFC_ALLOCATOR!r}))"
    )
    assert _run(code) == "true"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("os.environ[NAME] = 'false'", "false"),  # the user's choice wins
        ("sys.modules['tensorflow'] = types.ModuleType('tensorflow')", "None"),  # too late
        ("", "true"),
    ],
)
def test_prepare_tensorflow_respects_the_user_and_a_running_tensorflow(
    setup: str, expected: str
) -> None:
    code = (
        "import os, sys, types\n"
        "from breastcls.environment import BFC_ALLOCATOR as NAME, prepare_tensorflow\n"
        f"{setup}\nprepare_tensorflow()\nprint(os.environ.get(NAME))"
    )
    assert _run(code) == expected


def test_importing_breastcls_and_its_model_module_prints_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import breastcls, breastcls.model"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stderr == "" and result.stdout == ""


def _prediction(predicted: list[str], top: list[float], flagged: list[bool] | None) -> Any:
    from breastcls.inference.model import Prediction

    probabilities = np.array([[1 - p, p] if name == "malignant" else [p, 1 - p]
                              for name, p in zip(predicted, top, strict=True)])  # fmt: skip
    return Prediction(
        class_names=("benign", "malignant"),
        probabilities=probabilities,
        raw_probabilities=probabilities,
        predicted=tuple(predicted),
        score=probabilities[:, 1],
        in_distribution=None if flagged is None else ~np.array(flagged),
    )


def test_a_prediction_says_its_answer_in_one_line() -> None:
    from breastcls.inference.predict import PredictResult

    one = _prediction(["malignant"], [0.834], [False])
    assert repr(one) == "Prediction(1 image: malignant, p=0.83, in_distribution=True)"
    assert repr(_prediction(["benign"], [0.91], None)) == "Prediction(1 image: benign, p=0.91)"
    many = _prediction(["malignant", "benign", "malignant"], [0.9, 0.8, 0.7], [False, True, False])
    assert repr(many) == "Prediction(3 images: 2 malignant, 1 benign; 1 unlike the training images)"
    result = PredictResult(prediction=many, sources=("a", "b", "c"), path=Path("p.csv"))
    assert repr(result) == (
        "PredictResult(3 images: 2 malignant, 1 benign; 1 unlike the training images -> p.csv)"
    )
