"""breastcls: plugin-based CNN classifiers for breast-cancer histopathology images.

Research software: not a medical device, not for diagnosis.

What a first project needs, imported from ``breastcls`` itself:

- Train: ``train(RunConfig(data=DataConfig(...), model=ModelConfig(...)))`` writes a run
  folder (``TrainConfig`` sets epochs, batch size...) and returns a ``RunResult``;
  ``resume``, ``cross_validate``, ``resume_cross_validation``, ``demo_config``,
  ``make_demo_dataset``.
- Predict: ``load_model(run_or_export)`` gives an ``InferenceModel``; ``predict(model, images)``
  a ``PredictResult`` of ``Prediction`` objects; ``calibrate`` fits a TTA's calibration.
- Evaluate: ``evaluate(model, data)`` (an ``EvaluationResult``, with ``report.html``);
  ``build_report`` rebuilds a folder's report.
- Whole slides: ``predict_slide`` (a ``SlideResult``).
- Data and export: ``check_data``, ``load_dataset``, ``export_model``.
- Plugins: the contracts ``Backbone``, ``KerasBackbone``, ``Head``, ``Augmentation``,
  ``Trainer``, ``Metric``, ``Dataset``; ``DataRole``; ``hookimpl``, ``PluginRegistry``,
  ``list_backbones``, ``list_components``.
- Errors: ``BreastclsError`` and its kinds (``ConfigError``, ``DataError``, ...): every bad input
  raises one, with a message that says what to do.

``help(breastcls.train)`` (or any name above) gives its documentation. The rest lives in named
sub-namespaces: :mod:`breastcls.interfaces` (every plugin contract and value type),
:mod:`breastcls.plugins` (the plugin host), :mod:`breastcls.registry`, :mod:`breastcls.data`
(manifests, BreakHis names, splits, images), :mod:`breastcls.runs` (run folders and listing),
:mod:`breastcls.training`, :mod:`breastcls.model`, :mod:`breastcls.export`,
:mod:`breastcls.model_card`, :mod:`breastcls.environment` and :mod:`breastcls.testing`.

Importing breastcls changes nothing in the process and does not import TensorFlow; Keras is
loaded by the functions that need it, which first call
:func:`breastcls.environment.prepare_tensorflow`.
"""

from __future__ import annotations

from breastcls._version import __version__
from breastcls.api import (
    cross_validate,
    demo_config,
    list_backbones,
    list_components,
    resume,
    resume_cross_validation,
    train,
)
from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.data.check import check_data
from breastcls.data.demo import make_demo_dataset
from breastcls.data.loading import load_dataset
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
from breastcls.evaluation.evaluate import EvaluationResult, evaluate
from breastcls.evaluation.reporting import build_report
from breastcls.export import export_model
from breastcls.inference import InferenceModel, ModelRecord, Prediction
from breastcls.inference.calibrate import calibrate
from breastcls.inference.predict import PredictResult, predict
from breastcls.interfaces import (
    Augmentation,
    Backbone,
    DataRole,
    Dataset,
    Head,
    KerasBackbone,
    Metric,
    Trainer,
)
from breastcls.plugins.host import hookimpl
from breastcls.registry import PluginRegistry
from breastcls.runs.folder import RunResult
from breastcls.slides.job import SlideResult, predict_slide
from breastcls.training.crossval import CrossValidationResult

#: The one door for a trained model: :meth:`InferenceModel.load` (a run folder, an export
#: folder or a model file, with its record), under the name users look for first.
load_model = InferenceModel.load

__all__ = [
    "Augmentation",
    "Backbone",
    "BreastclsError",
    "ConfigError",
    "CrossValidationResult",
    "DataConfig",
    "DataError",
    "DataRole",
    "Dataset",
    "DuplicateComponentError",
    "EvaluationResult",
    "Head",
    "InferenceModel",
    "KerasBackbone",
    "Metric",
    "ModelConfig",
    "ModelLoadError",
    "ModelRecord",
    "OutputError",
    "PluginError",
    "PluginRegistry",
    "PredictResult",
    "Prediction",
    "RunConfig",
    "RunResult",
    "SlideResult",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "UnknownComponentError",
    "__version__",
    "build_report",
    "calibrate",
    "check_data",
    "cross_validate",
    "demo_config",
    "evaluate",
    "export_model",
    "hookimpl",
    "list_backbones",
    "list_components",
    "load_dataset",
    "load_model",
    "make_demo_dataset",
    "predict",
    "predict_slide",
    "resume",
    "resume_cross_validation",
    "train",
]

# `help(breastcls)` is the overview above, not the full documentation of every name: pydoc
# renders what dir() lists, so the exported names are served by __getattr__ instead of sitting
# in the module's namespace (`from breastcls import train` and `breastcls.train` work as ever).
_EXPORTED: dict[str, object] = {
    name: globals().pop(name) for name in __all__ if name != "__version__"
}


def __getattr__(name: str) -> object:
    """The exported names (``__all__``)."""
    try:
        return _EXPORTED[name]
    except KeyError:
        raise AttributeError(f"module 'breastcls' has no attribute {name!r}") from None
