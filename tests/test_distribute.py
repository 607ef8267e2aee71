"""Scale-out on tf.distribute: device choice, cluster roles, and mirrored training on 2 CPUs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _runs import run_watched, wait_on_progress
from breastcls import ConfigError, TrainConfig
from breastcls.cli.app import app
from breastcls.training.distribute import (
    WorkerRole,
    check_devices,
    parse_devices,
    select_strategy,
    worker_out_dir,
    worker_role,
)

REPO = Path(__file__).resolve().parents[1]


def _tf_config(cluster: dict[str, list[str]], task_type: str, index: int) -> dict[str, str]:
    return {
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
    }


def test_parse_devices_reads_counts_and_names() -> None:
    assert parse_devices("2") == 2
    assert parse_devices(" GPU:0, GPU:1 ") == ("GPU:0", "GPU:1")
    assert parse_devices("cpu:0") == ("cpu:0",)
    for bad in ("0", "", "GPU:0,,GPU:1"):
        with pytest.raises(ConfigError):
            parse_devices(bad)


def test_train_config_devices_round_trip_and_validation() -> None:
    assert TrainConfig(devices=["GPU:0", "GPU:1"]).devices == ("GPU:0", "GPU:1")  # type: ignore[arg-type]
    assert TrainConfig(devices=3).devices == 3
    for bad in (0, -1, True, (), ("",)):
        with pytest.raises(ConfigError, match="devices"):
            TrainConfig(devices=bad)  # type: ignore[arg-type]


def test_worker_role_follows_tf_config_chief_rules() -> None:
    workers = {"worker": ["a:1", "b:2"]}
    assert worker_role({}) is None
    assert worker_role({"TF_CONFIG": "  "}) is None
    assert worker_role(_tf_config(workers, "worker", 0)) == WorkerRole(
        task_type="worker", task_index=0, workers=2, is_chief=True
    )
    assert worker_role(_tf_config(workers, "worker", 1)) == WorkerRole(
        task_type="worker", task_index=1, workers=2, is_chief=False
    )
    with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
    chief = worker_role(_tf_config(with_chief, "chief", 0))
    worker = worker_role(_tf_config(with_chief, "worker", 0))
    assert chief is not None and chief.is_chief and chief.workers == 2
    assert worker is not None and not worker.is_chief


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TF_CONFIG": "{not json"}, "not a valid cluster"),
        ({"TF_CONFIG": json.dumps({"task": {"type": "worker", "index": 0}})}, "cluster"),
        (_tf_config({"worker": ["a:1"], "ps": ["p:1"]}, "ps", 0), "'ps' is not supported"),
        (_tf_config({"worker": ["a:1"]}, "worker", 3), "not in its cluster"),
    ],
)
def test_worker_role_rejects_bad_tf_config(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        worker_role(environ)


def test_non_chief_workers_write_into_a_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv("TF_CONFIG", _tf_config(workers, "worker", 0)["TF_CONFIG"])
    assert worker_out_dir(tmp_path / "runs") == tmp_path / "runs"
    monkeypatch.setenv("TF_CONFIG", _tf_config(workers, "worker", 1)["TF_CONFIG"])
    elsewhere = worker_out_dir(tmp_path / "runs")
    assert elsewhere != tmp_path / "runs" and elsewhere.is_dir()
    assert elsewhere.name.startswith("breastcls-worker1-")
    elsewhere.rmdir()
    with pytest.raises(ConfigError, match="both set"):
        check_devices(2)


def test_bad_device_choices_fail_before_training() -> None:
    with pytest.raises(ConfigError, match="this machine has"):
        select_strategy(64)
    with pytest.raises(ConfigError, match=r"unknown device\(s\) \['GPU:7'\]"):
        select_strategy(("GPU:7",))
    single = select_strategy(("cpu:0",))
    assert single.num_replicas_in_sync == 1


def test_cli_rejects_a_bad_devices_value(small_breakhis: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(small_breakhis), "--devices", "0", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2
    assert "device count must be at least 1" in result.output
    assert not (tmp_path / "o").exists()


_MIRRORED_SCRIPT = """
import csv, json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
from breastcls import DataConfig, ModelConfig, RunConfig, TrainConfig, load_model, train

def run(name, devices, batch_size):
    config = RunConfig(
        data=DataConfig(path=sys.argv[1], image_size=32, selection_fraction=0.34),
        model=ModelConfig(backbone="smallcnn", augmentation="none", weights=None),
        train=TrainConfig(epochs=2, batch_size=batch_size, verbose=0, devices=devices),
        out_dir=sys.argv[2],
        name=name,
    )
    result = train(config)
    model = load_model(result.best_model).keras_model
    saved = json.loads((result.run_dir / "config.json").read_text())
    with open(result.run_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "loss": result.history["loss"],
        "val_loss": result.history["val_loss"],
        "accuracy": result.metrics["classification"]["accuracy"],
        "distribution": saved["distribution"],
        "devices": saved["train"]["devices"],
        "output_shape": list(model.output_shape),
        "params": int(model.count_params()),
        "probabilities": [[float(row["p_benign"]), float(row["p_malignant"])] for row in rows],
    }

single = run("single", None, 8)
mirrored = run("mirrored", ("CPU:0", "CPU:1"), 4)
print("RESULT " + json.dumps({"single": single, "mirrored": mirrored}))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_single_device(
    small_breakhis: Path, tmp_path: Path
) -> None:
    # Logical devices must be configured before TensorFlow starts: its own process.
    done = run_watched(
        [sys.executable, "-c", _MIRRORED_SCRIPT, str(small_breakhis), str(tmp_path / "runs")],
        cwd=REPO,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    single, mirrored = result["single"], result["mirrored"]

    assert single["distribution"] == {
        "strategy": "_DefaultDistributionStrategy",
        "replicas": 1,
        "global_batch_size": 8,
    }
    assert mirrored["distribution"] == {
        "strategy": "MirroredStrategy",
        "replicas": 2,
        "global_batch_size": 8,
    }
    assert mirrored["devices"] == ["CPU:0", "CPU:1"]
    # Same network, same outputs, same validation images.
    assert mirrored["output_shape"] == single["output_shape"] == [None, 2]
    assert mirrored["params"] == single["params"]
    # The same validation images, predicted by a model of the same shape.
    assert len(mirrored["probabilities"]) == len(single["probabilities"]) > 0
    for row in mirrored["probabilities"]:
        assert sum(row) == pytest.approx(1.0, abs=1e-4)
    # Same initial weights, same global batches: each epoch's validation loss agrees closely
    # (two short epochs at the seed's learning rate; observed difference about 0.002).
    assert len(mirrored["val_loss"]) == len(single["val_loss"]) == 2
    assert mirrored["val_loss"] == pytest.approx(single["val_loss"], abs=0.01)
    # Training losses carry dropout and per-replica BatchNorm noise (4 images instead of 8).
    assert mirrored["loss"] == pytest.approx(single["loss"], abs=0.3)


_WORKER_SCRIPT = """
import json, sys
from breastcls import DataConfig, ModelConfig, RunConfig, TrainConfig, train

results = []
for name in ("first", "second"):  # two runs in one process, as the folds of a cross-validation
    config = RunConfig(
        data=DataConfig(path=sys.argv[1], image_size=32, selection_fraction=0.34),
        model=ModelConfig(backbone="smallcnn", augmentation="seed", weights=None),
        train=TrainConfig(epochs=1, batch_size=4, verbose=0),
        out_dir=sys.argv[2],
        name=name,
    )
    result = train(config)
    saved = json.loads((result.run_dir / "config.json").read_text())
    results.append({
        "run_dir": str(result.run_dir), "loss": result.history["loss"],
        "distribution": saved["distribution"],
    })
print("RESULT " + json.dumps(results))
"""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_writes_the_run(
    small_breakhis: Path, tmp_path: Path
) -> None:
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    out = tmp_path / "runs"
    logs = {index: (tmp_path / f"{index}.out", tmp_path / f"{index}.err") for index in (1, 0)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER_SCRIPT, str(small_breakhis), str(out)],
            env={**os.environ, **_tf_config(cluster, "worker", index)},
            stdout=logs[index][0].open("wb"),
            stderr=logs[index][1].open("wb"),
            cwd=REPO,
        )
        for index in (1, 0)
    ]
    results = []
    # Either worker's output is progress: the two wait on each other.
    every_log = [path for pair in logs.values() for path in pair]
    for worker, (out_log, err_log) in zip(workers, logs.values(), strict=True):
        wait_on_progress(worker, every_log, what="a worker to end")
        stdout, stderr = out_log.read_text(), err_log.read_text()
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        assert worker.returncode == 0 and lines, stderr[-3000:]
        results.append(json.loads(lines[-1].removeprefix("RESULT ")))
    worker1, chief = results
    assert [Path(run["run_dir"]) for run in chief] == [out / "first", out / "second"]
    assert (out / "first" / "best.keras").is_file() and (out / "second" / "best.keras").is_file()
    assert sorted(path.name for path in out.iterdir()) == ["first", "second"]  # written once
    assert not any(Path(run["run_dir"]).is_relative_to(out) for run in worker1)
    for run in chief:
        assert run["distribution"] == {
            "strategy": "CollectiveAllReduceStrategy",
            "replicas": 2,
            "global_batch_size": 8,
        }
    # Synchronous data parallelism: both workers saw the same global batches.
    assert [run["loss"] for run in worker1] == [run["loss"] for run in chief]
    for run in worker1:
        shutil.rmtree(Path(run["run_dir"]).parent)
