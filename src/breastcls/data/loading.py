"""Reading a dataset with the registered formats, and task/magnification filters."""

from __future__ import annotations

import dataclasses

from breastcls.config import DataConfig
from breastcls.data.folder import LoadedDataset
from breastcls.errors import DataError
from breastcls.interfaces import Dataset
from breastcls.plugins.host import PluginHost, ensure_host

__all__ = ["load_dataset"]


def load_dataset(config: DataConfig, *, host: PluginHost | None = None) -> Dataset:
    """Read ``config.path`` with the first registered format that accepts it, then apply the
    magnification filter and the task (``binary`` or ``subtype`` labels).

    Raises:
        DataError: No format accepts the path, or the filters leave unusable data.
    """
    host = ensure_host(host)
    path = config.path
    if not path.exists():
        raise DataError(
            f"Data path {str(path)!r} does not exist: pass --data with a folder "
            "(root/<class>/*.png or root/{train,validation}/<class>/*.png) or a CSV manifest."
        )
    formats = [info for info in host.datasets if info.component.accepts(path)]
    if not formats:
        known = ", ".join(host.datasets.names())
        raise DataError(f"No dataset format reads {str(path)!r} (formats: {known}).")
    dataset = formats[0].component.load(path, config=config)
    samples = dataset.samples
    if config.magnification is not None:
        samples = tuple(s for s in samples if s.magnification == config.magnification)
        if not samples:
            raise DataError(
                f"No image of {path} is at magnification {config.magnification}X (magnification "
                "comes from BreakHis file names or a manifest's magnification column)."
            )
    class_names = dataset.class_names
    if config.task == "subtype":
        unknown = [s.path for s in samples if not s.subtype]
        if unknown:
            raise DataError(
                f"The subtype task needs a subtype for every image; {len(unknown)} have none "
                f"(first: {unknown[0]}). Use BreakHis file names or a manifest subtype column."
            )
        samples = tuple(dataclasses.replace(s, label=str(s.subtype)) for s in samples)
        class_names = tuple(sorted({s.label for s in samples}))
    present = {s.label for s in samples}
    class_names = tuple(name for name in class_names if name in present)
    if len(class_names) < 2:
        raise DataError(
            f"After filtering, {path} has only the class(es) {list(class_names)}; a classifier "
            "needs at least two."
        )
    return LoadedDataset(
        root=dataset.root, class_names=class_names, samples=samples, skipped=dataset.skipped
    )
