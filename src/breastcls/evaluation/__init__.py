"""Evaluation: predictions, metrics, plots and reports."""
