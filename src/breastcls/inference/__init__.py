"""Inference, the one door for a trained model: its record, one probability path, explicit
calibration."""

from __future__ import annotations

from breastcls.inference.model import InferenceModel, Prediction, Scores
from breastcls.inference.record import ModelRecord

__all__ = ["InferenceModel", "ModelRecord", "Prediction", "Scores"]
