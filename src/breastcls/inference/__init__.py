"""Inference: a trained model with everything it needs to predict as its run did."""

from __future__ import annotations

from breastcls.inference.model import InferenceModel, Prediction

__all__ = ["InferenceModel", "Prediction"]
