"""Built-in dataset formats."""

from __future__ import annotations

from breastcls.data.folder import FolderFormat
from breastcls.data.manifest import ManifestFormat
from breastcls.interfaces import DatasetFormat
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry


@hookimpl
def breastcls_register_datasets(registry: PluginRegistry[DatasetFormat]) -> None:
    """Register the ``folder`` and ``manifest`` formats."""
    registry.add(
        "folder",
        FolderFormat(),
        summary="root/<class>/* or root/{train,validation}/<class>/* (PNG, JPEG, TIFF, BMP)",
    )
    registry.add(
        "manifest",
        ManifestFormat(),
        summary="CSV path,label[,patient_id][,magnification][,subtype][,split] (+ extra columns)",
    )
