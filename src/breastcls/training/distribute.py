"""Scale-out on ``tf.distribute``: the strategy a run trains under, and which process writes.

breastcls does not distribute anything itself; it picks one of TensorFlow's strategies and
builds, compiles and fits the model inside its scope (:func:`breastcls.train` does this):

* ``TF_CONFIG`` set (a multi-worker cluster): ``MultiWorkerMirroredStrategy``; each worker uses
  its local GPUs (or its CPU). Only the chief (task ``chief``, or ``worker`` 0 when the cluster
  has no chief) writes the run folder; the other workers write theirs into a temporary folder.
* ``devices=None``: every local GPU with ``MirroredStrategy`` when there are two or more;
  otherwise TensorFlow's default strategy (one GPU, or the CPU).
* ``devices=N``: the first ``N`` GPUs (the first ``N`` logical CPU devices on a machine without
  GPU); ``N=1`` trains on one device without mirroring.
* ``devices=("GPU:0", "GPU:2")``: exactly these devices.

``TrainConfig.batch_size`` is the batch of one replica: a step processes
``batch_size x replicas`` images (the global batch), split evenly across the replicas, and the
gradients are summed across replicas. The learning rate is not changed: with a larger global
batch, scale it yourself (the linear rule, ``learning_rate x replicas``, with a few epochs of
warm-up when the product is large).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastcls.errors import ConfigError

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

Devices = int | tuple[str, ...] | None
"""A device choice: ``None`` (automatic), a count, or device names."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRole:
    """This process's place in a multi-worker cluster (from ``TF_CONFIG``).

    Attributes:
        task_type: ``chief`` or ``worker``.
        task_index: Index of this task within its type.
        workers: Number of training processes in the cluster (chief included).
        is_chief: Whether this process writes the run folder.
    """

    task_type: str
    task_index: int
    workers: int
    is_chief: bool


def parse_devices(text: str) -> int | tuple[str, ...]:
    """Parse a ``--devices`` value: a count (``2``) or comma-separated names (``GPU:0,GPU:1``).

    Raises:
        ConfigError: The value is empty, a count below 1, or has an empty name.
    """
    value = text.strip()
    if value.isdigit():
        count = int(value)
        if count < 1:
            raise ConfigError(f"--devices {text!r}: a device count must be at least 1.")
        return count
    names = tuple(part.strip() for part in value.split(","))
    if not value or any(not name for name in names):
        raise ConfigError(
            f"--devices {text!r} is neither a count nor a list of device names: pass e.g. 2 or "
            "GPU:0,GPU:1."
        )
    return names


def worker_role(environ: Mapping[str, str] | None = None) -> WorkerRole | None:
    """Read this process's role from ``TF_CONFIG``; ``None`` when it is unset or empty.

    Args:
        environ: The environment to read (``os.environ`` when ``None``).

    Raises:
        ConfigError: ``TF_CONFIG`` is not valid JSON, lacks ``cluster`` or ``task``, or names a
            task type breastcls does not train with (``ps``, ``evaluator``).
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        tf_config = json.loads(raw)
        cluster = tf_config["cluster"]
        task = tf_config["task"]
        task_type = str(task["type"])
        task_index = int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"TF_CONFIG is not a valid cluster description ({type(error).__name__}: {error}): it "
            'must be JSON like {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": '
            '{"type": "worker", "index": 0}} (see docs/performance.md), or unset it.'
        ) from error
    if task_type not in ("chief", "worker"):
        raise ConfigError(
            f"TF_CONFIG task type {task_type!r} is not supported: breastcls trains with "
            "MultiWorkerMirroredStrategy, whose tasks are 'chief' and 'worker'."
        )
    members = cluster.get(task_type, []) if isinstance(cluster, dict) else []
    if not 0 <= task_index < len(members):
        raise ConfigError(
            f"TF_CONFIG task {task_type}:{task_index} is not in its cluster "
            f"({len(members)} {task_type} address(es)); fix the task index or the cluster."
        )
    has_chief = bool(cluster.get("chief"))
    is_chief = task_type == "chief" or (not has_chief and task_index == 0)
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return WorkerRole(
        task_type=task_type, task_index=task_index, workers=workers, is_chief=is_chief
    )


def _short_name(name: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:0``, ``/gpu:0`` -> ``GPU:0``."""
    tail = name.rsplit("device:", 1)[-1].lstrip("/")
    kind, _, index = tail.partition(":")
    return f"{kind.upper()}:{index}"


def _chosen_devices(devices: int | tuple[str, ...]) -> list[str]:
    """Resolve a count or names into full logical device names (this initialises TensorFlow)."""
    import tensorflow as tf

    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if isinstance(devices, int):
        pool = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
        if not 1 <= devices <= len(pool):
            kind = "GPU" if gpus else "CPU device"
            cpu_note = (
                ""
                if gpus
                else " TensorFlow sees the CPU as one device unless it is split, before "
                "TensorFlow starts, with tf.config.set_logical_device_configuration."
            )
            raise ConfigError(
                f"devices={devices} but this machine has {len(pool)} {kind}(s): pass at most "
                f"{len(pool)}.{cpu_note}"
            )
        return pool[:devices]
    available = {
        _short_name(device.name): device.name for device in tf.config.list_logical_devices()
    }
    unknown = [name for name in devices if _short_name(name) not in available]
    if unknown or not devices:
        raise ConfigError(
            f"devices {list(devices)}: unknown device(s) {unknown}; this machine has "
            f"{sorted(available)}."
        )
    return [available[_short_name(name)] for name in devices]


def check_devices(devices: Devices) -> None:
    """Check a device choice up front, without creating a strategy.

    Raises:
        ConfigError: As :func:`select_strategy`, except a multi-worker start-up failure.
    """
    role = worker_role()
    if role is not None:
        if devices is not None:
            raise ConfigError(
                f"devices={devices!r} and TF_CONFIG are both set: in a multi-worker cluster each "
                "worker uses all its local GPUs; drop --devices or unset TF_CONFIG."
            )
        return  # listing devices now would start TensorFlow before the strategy
    if devices is not None:
        _chosen_devices(devices)


def select_strategy(devices: Devices = None) -> Any:
    """Return the ``tf.distribute.Strategy`` to train under (rules in the module docstring).

    Call it before TensorFlow runs anything else in the process: a multi-worker strategy must
    be created at program start-up.

    Args:
        devices: ``None`` (automatic), a count, or device names (``GPU:0``, ``CPU:1``...).

    Raises:
        ConfigError: ``devices`` asks for more or other devices than this machine has, both
            ``devices`` and ``TF_CONFIG`` are set, or the multi-worker strategy cannot start.
    """
    check_devices(devices)
    import tensorflow as tf

    if worker_role() is not None:
        return _multi_worker_strategy()
    if devices is None:
        gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
        return (
            tf.distribute.MirroredStrategy(gpus) if len(gpus) > 1 else tf.distribute.get_strategy()
        )
    chosen = _chosen_devices(devices)
    if len(chosen) == 1:
        return tf.distribute.OneDeviceStrategy(chosen[0])
    return tf.distribute.MirroredStrategy(chosen)


@functools.cache
def _multi_worker_strategy() -> Any:
    """The process's one ``MultiWorkerMirroredStrategy``: TensorFlow configures its collective
    ops once per process, so later runs (the folds of a cross-validation) reuse it."""
    import tensorflow as tf

    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as error:
        raise ConfigError(
            f"MultiWorkerMirroredStrategy could not start ({error}): start every worker in a "
            "fresh process with the same TF_CONFIG cluster and its own task."
        ) from error
    _reduce_each_value(strategy)
    return strategy


def _reduce_each_value(strategy: Any) -> None:
    """Make ``strategy.reduce`` accept what Keras 3's ``fit`` gives it under this strategy.

    Keras 3 (keras-team/keras#20585) reduces the whole first ``(images, labels)`` batch in one
    call, which ``MultiWorkerMirroredStrategy`` refuses (it reduces one value at a time), and
    reduces each step's scalar metrics along ``axis=0``, which a scalar does not have. Each value
    is reduced on its own, scalars across replicas only. This instance only is changed.
    """
    import tensorflow as tf

    reduce = strategy.reduce

    def reduce_one(reduce_op: Any, item: Any, axis: Any) -> Any:
        local = strategy.experimental_local_results(item)
        if axis is not None and local and local[0].shape.rank == 0:
            axis = None
        return reduce(reduce_op, item, axis=axis)

    def reduce_each(reduce_op: Any, value: Any, axis: Any = None) -> Any:
        return tf.nest.map_structure(lambda item: reduce_one(reduce_op, item, axis), value)

    strategy.reduce = reduce_each


def describe_strategy(strategy: Any, batch_size: int) -> dict[str, Any]:
    """Return the JSON-ready record of a strategy kept in ``config.json`` (``distribution``)."""
    replicas = int(strategy.num_replicas_in_sync)
    return {
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "global_batch_size": batch_size * replicas,
    }


def worker_out_dir(out_dir: Path) -> Path:
    """Return where this process writes its run folder: ``out_dir``, except on the non-chief
    workers of a multi-worker cluster, which write into a new temporary folder (so that the
    run folder is written once)."""
    role = worker_role()
    if role is None or role.is_chief:
        return out_dir
    return Path(tempfile.mkdtemp(prefix=f"breastcls-{role.task_type}{role.task_index}-"))


def distribute_dataset(dataset: Any, strategy: Any) -> Any:
    """Prepare a batched ``tf.data`` dataset for ``strategy``.

    Multi-worker training shards by element (every worker reads the same seeded order and keeps
    its share of each global batch): the file-based sharding TensorFlow tries first does not
    apply to a list of image paths. Other strategies get the dataset unchanged.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
