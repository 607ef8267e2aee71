"""The configuration defaults that the commands show and use, read from the dataclasses.

Every option that sets a configuration field takes its default from here, so a default is
written once, in :mod:`breastcls.config`, and ``--help`` shows the value a run really uses.
"""

from __future__ import annotations

from pathlib import Path

from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig

__all__ = ["DATA", "MODEL", "RUN", "TRAIN"]

DATA = DataConfig(path=Path())
MODEL = ModelConfig()
TRAIN = TrainConfig()
RUN = RunConfig(data=DATA)
