"""The registry: lookup, listing, errors with close matches, duplicate ids naming both plugins."""

from __future__ import annotations

import pytest

from breastcls import ConfigError, DuplicateComponentError, UnknownComponentError
from breastcls.registry import Registry


def make_registry() -> Registry[str]:
    registry: Registry[str] = Registry("backbone")
    registry.scoped("plugin_a").add("densenet201", "A", summary="first")
    registry.scoped("plugin_a").add("mobilenetv3small", "B", summary="second")
    return registry


def test_lookup_and_listing_record_the_plugin() -> None:
    registry = make_registry()
    assert registry.get("densenet201") == "A"
    assert registry.names() == ["densenet201", "mobilenetv3small"]
    info = registry.info("mobilenetv3small")
    assert (info.kind, info.name, info.plugin, info.summary) == (
        "backbone",
        "mobilenetv3small",
        "plugin_a",
        "second",
    )
    assert "densenet201" in registry and len(registry) == 2


def test_unknown_id_lists_known_ids_and_close_matches() -> None:
    with pytest.raises(UnknownComponentError) as caught:
        make_registry().get("densenet121")
    message = str(caught.value)
    assert "Unknown backbone 'densenet121'" in message
    assert "Did you mean 'densenet201'?" in message
    assert "densenet201, mobilenetv3small" in message
    assert isinstance(caught.value, LookupError)


def test_duplicate_id_names_both_plugins() -> None:
    registry = make_registry()
    with pytest.raises(DuplicateComponentError, match="plugin 'plugin_a' and plugin 'plugin_b'"):
        registry.scoped("plugin_b").add("densenet201", "C", summary="clash")
    assert registry.get("densenet201") == "A"


@pytest.mark.parametrize("bad_id", ["", "DenseNet", "two words"])
def test_ids_must_be_lowercase_identifiers(bad_id: str) -> None:
    with pytest.raises(ConfigError, match="ids must be"):
        make_registry().scoped("plugin_c").add(bad_id, "X", summary="bad")
