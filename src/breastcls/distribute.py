"""The old home of :mod:`breastcls.training.distribute`, kept for code that imports it from here."""

from __future__ import annotations

from breastcls.training.distribute import (
    Devices,
    WorkerRole,
    check_devices,
    describe_strategy,
    distribute_dataset,
    parse_devices,
    select_strategy,
    worker_out_dir,
    worker_role,
)

__all__ = [
    "Devices",
    "WorkerRole",
    "check_devices",
    "describe_strategy",
    "distribute_dataset",
    "parse_devices",
    "select_strategy",
    "worker_out_dir",
    "worker_role",
]
