"""breastcls: plugin-based CNN classifiers for breast-cancer histopathology images.

Importing breastcls does not import TensorFlow; Keras is loaded by the functions that need it.
"""

from __future__ import annotations

import os

# TensorFlow picks its CPU allocator when it creates its first device, so this must be set
# before any TensorFlow op runs. The BFC allocator makes CPU training steps steadier and faster
# (docs/performance.md); a value the user has set wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

from breastcls._version import __version__
from breastcls.api import demo_config, list_backbones, list_components
from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.crossval import CrossValidationResult, cross_validate, resume_cross_validation
from breastcls.data.breakhis import BreakHisName, parse_breakhis_name
from breastcls.data.check import DataIssue, DataReport, DuplicateGroup, check_data
from breastcls.data.demo import make_demo_dataset
from breastcls.data.images import decode_image
from breastcls.data.loading import load_dataset
from breastcls.data.manifest import ManifestFormat, read_manifest
from breastcls.data.split import Split, kfold_splits, spanhol_splits, split_samples
from breastcls.distribute import WorkerRole, select_strategy, worker_role
from breastcls.errors import (
    BreastclsError,
    ConfigError,
    DataError,
    DuplicateComponentError,
    ModelLoadError,
    OutputError,
    PluginError,
    TrainingError,
    UnknownComponentError,
)
from breastcls.evaluation.evaluate import (
    EvaluationResult,
    PredictResult,
    build_report,
    evaluate,
    predict,
)
from breastcls.export import ExportResult, export_model
from breastcls.interfaces import (
    TTA,
    Augmentation,
    Backbone,
    BackboneFactory,
    BackbonePreprocessing,
    Dataset,
    DatasetFormat,
    Head,
    KerasBackbone,
    Metric,
    MetricSection,
    Predictions,
    Sample,
    SkippedFile,
    Trainer,
)
from breastcls.model import build_model, load_model
from breastcls.model_card import write_model_card
from breastcls.plugins.host import ENTRY_POINT_GROUP, PluginHost, default_host, hookimpl
from breastcls.registry import ComponentInfo, PluginRegistry, Registry
from breastcls.runs.folder import RunResult
from breastcls.runs import RunSummary, list_runs
from breastcls.train import resume, train

__all__ = [
    "ENTRY_POINT_GROUP",
    "TTA",
    "Augmentation",
    "Backbone",
    "BackboneFactory",
    "BackbonePreprocessing",
    "BreakHisName",
    "BreastclsError",
    "ComponentInfo",
    "ConfigError",
    "CrossValidationResult",
    "DataConfig",
    "DataError",
    "DataIssue",
    "DataReport",
    "Dataset",
    "DatasetFormat",
    "DuplicateComponentError",
    "DuplicateGroup",
    "EvaluationResult",
    "ExportResult",
    "Head",
    "KerasBackbone",
    "ManifestFormat",
    "Metric",
    "MetricSection",
    "ModelConfig",
    "ModelLoadError",
    "OutputError",
    "PluginError",
    "PluginHost",
    "PluginRegistry",
    "PredictResult",
    "Predictions",
    "Registry",
    "RunConfig",
    "RunResult",
    "RunSummary",
    "Sample",
    "SkippedFile",
    "Split",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "UnknownComponentError",
    "WorkerRole",
    "__version__",
    "build_model",
    "build_report",
    "check_data",
    "cross_validate",
    "decode_image",
    "default_host",
    "demo_config",
    "evaluate",
    "export_model",
    "hookimpl",
    "kfold_splits",
    "list_backbones",
    "list_components",
    "list_runs",
    "load_dataset",
    "load_model",
    "make_demo_dataset",
    "parse_breakhis_name",
    "predict",
    "read_manifest",
    "resume",
    "resume_cross_validation",
    "select_strategy",
    "spanhol_splits",
    "split_samples",
    "train",
    "worker_role",
    "write_model_card",
]
