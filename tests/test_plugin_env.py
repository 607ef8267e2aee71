"""BREASTCLS_TRACE_HOOKS traces every hook call; BREASTCLS_DISABLE_PLUGINS disables by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from breastcls import UnknownComponentError, hookimpl
from breastcls.plugins import PluginHost


class _EpochListener:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    @hookimpl
    def breastcls_epoch_end(self, run_dir: Path, epoch: int, logs: Mapping[str, float]) -> None:
        self.epochs.append(epoch)


def test_trace_hooks_writes_every_hook_call_to_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("BREASTCLS_TRACE_HOOKS", "1")
    listener = _EpochListener()
    host = PluginHost(plugins=[("listener", listener)])
    host.epoch_end(tmp_path, 3, {"loss": 0.25})
    err = capsys.readouterr().err
    assert "breastcls_register_backbones [hook]" in err
    assert "breastcls_epoch_end [hook]" in err
    assert "epoch: 3" in err
    assert listener.epochs == [3]


def test_no_trace_without_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("BREASTCLS_TRACE_HOOKS", raising=False)
    PluginHost().epoch_end(tmp_path, 0, {})
    assert capsys.readouterr().err == ""


def test_a_disabled_builtin_is_gone_and_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREASTCLS_DISABLE_PLUGINS", "builtin_augmentations")
    host = PluginHost()
    assert "builtin_augmentations" not in host.plugin_names()
    assert "builtin_heads" in host.plugin_names()
    assert len(host.augmentations) == 0
    with pytest.raises(UnknownComponentError, match="Unknown augmentation 'seed'"):
        host.augmentations.get("seed")
