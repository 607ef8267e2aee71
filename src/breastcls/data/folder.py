"""Folder datasets: ``root/<class>/*`` or ``root/{train,validation}/<class>/*``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from breastcls.config import DataConfig
from breastcls.data.breakhis import parse_breakhis_name
from breastcls.data.images import IMAGE_EXTENSIONS
from breastcls.errors import DataError
from breastcls.interfaces import Sample, SkippedFile

__all__ = ["SPLIT_FOLDERS", "FolderFormat", "LoadedDataset"]

SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
_SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedDataset:
    """A plain :class:`~breastcls.interfaces.Dataset` value."""

    root: Path
    class_names: tuple[str, ...]
    samples: tuple[Sample, ...]
    skipped: tuple[SkippedFile, ...] = ()


def _check_class_count(path: Path, class_names: list[str]) -> None:
    """Refuse fewer than two class folders, naming the folder of one class for what it is."""
    if not class_names and (loose := _list_images(path)[0]):
        raise DataError(
            f"{path} holds {len(loose)} images but no class folders: it looks like the "
            f"folder of one class. Pass the folder above it ({path.parent}), laid out as "
            "root/<class>/*.png, or a CSV manifest."
        )
    if len(class_names) < 2:
        found = class_names[0] if class_names else "none"
        raise DataError(
            f"{path} has {len(class_names)} class folder(s) (found: {found}); a classifier "
            "needs at least two, e.g. benign/ and malignant/."
        )


def _list_images(folder: Path) -> tuple[list[Path], list[SkippedFile]]:
    """List image files under ``folder`` (sub-folders included), recording what is left out."""
    images: list[Path] = []
    skipped: list[SkippedFile] = []
    seen: set[tuple[int, int]] = set()
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        stat = os.stat(directory)
        if (stat.st_dev, stat.st_ino) in seen:
            skipped.append(SkippedFile(path=Path(directory), reason="symlink loop; not followed"))
            subdirectories[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        hidden = [name for name in subdirectories if name.startswith(".")]
        for name in hidden:
            skipped.append(SkippedFile(path=Path(directory, name), reason="hidden folder"))
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        for name in sorted(files):
            path = Path(directory, name)
            if name.lower() in _SYSTEM_FILES:
                skipped.append(SkippedFile(path=path, reason="operating-system file"))
            elif name.startswith("."):
                skipped.append(SkippedFile(path=path, reason="hidden file"))
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                allowed = ", ".join(sorted(IMAGE_EXTENSIONS))
                skipped.append(
                    SkippedFile(path=path, reason=f"not an image extension (allowed: {allowed})")
                )
            else:
                images.append(path)
    return images, skipped


def _class_folders(root: Path) -> list[Path]:
    return sorted(
        (child for child in root.iterdir() if child.is_dir() and not child.name.startswith(".")),
        key=lambda child: child.name,
    )


def _sample(path: Path, label: str, split: str | None) -> Sample:
    parsed = parse_breakhis_name(path.name)
    if parsed is None:
        return Sample(path=path, label=label, split=split)
    return Sample(
        path=path,
        label=label,
        split=split,
        patient_id=parsed.patient_id,
        magnification=parsed.magnification,
        subtype=parsed.subtype,
    )


class FolderFormat:
    """The folder layouts of the seed blog and of ``keras.utils.image_dataset_from_directory``.

    Class names are the sub-folder names in sorted order. When ``train/`` and ``validation/``
    (or ``val/``) exist, they fix the split; a ``test/`` folder is read as the test split.
    Non-image files, hidden files and operating-system files are skipped and recorded.
    """

    def accepts(self, path: Path) -> bool:
        """Return whether ``path`` is a folder."""
        return path.is_dir()

    def load(self, path: Path, *, config: DataConfig) -> LoadedDataset:
        """Read the folder tree at ``path``.

        Raises:
            DataError: The folder is missing, has fewer than two classes, a class without images,
                or split folders with different classes.
        """
        if not path.exists():
            raise DataError(
                f"Data folder {str(path)!r} does not exist: pass --data with a folder laid out as "
                "root/<class>/*.png or root/{train,validation}/<class>/*.png."
            )
        if not path.is_dir():
            raise DataError(f"{str(path)!r} is not a folder: pass a folder or a CSV manifest.")
        split_dirs = {
            SPLIT_FOLDERS[child.name.lower()]: child
            for child in _class_folders(path)
            if child.name.lower() in SPLIT_FOLDERS
        }
        if split_dirs and "train" not in split_dirs:
            raise DataError(
                f"{path} has split folders ({', '.join(sorted(split_dirs))}) but no train/: add "
                "train/<class>/ folders."
            )
        parts = split_dirs.items() if split_dirs else [(None, path)]
        samples: list[Sample] = []
        skipped: list[SkippedFile] = []
        classes_by_split: dict[str | None, list[str]] = {}
        for split, folder in parts:
            class_dirs = _class_folders(folder)
            classes_by_split[split] = [d.name for d in class_dirs]
            for class_dir in class_dirs:
                images, left_out = _list_images(class_dir)
                skipped.extend(left_out)
                if not images:
                    raise DataError(
                        f"Class folder {str(class_dir)!r} holds no images (.png, .jpg, .jpeg, "
                        ".tif, .tiff, .bmp): add images or remove the folder."
                    )
                samples.extend(_sample(image, class_dir.name, split) for image in images)
        class_names = classes_by_split.get("train", classes_by_split.get(None, []))
        for split, names in classes_by_split.items():
            if split not in (None, "train") and names != class_names:
                missing = sorted(set(class_names) - set(names))
                extra = sorted(set(names) - set(class_names))
                raise DataError(
                    f"The {split} folder of {path} has classes {names} but train has "
                    f"{class_names} (missing: {missing or 'none'}, unexpected: {extra or 'none'}): "
                    "every split needs the same class folders."
                )
        _check_class_count(path, class_names)
        return LoadedDataset(
            root=path,
            class_names=tuple(class_names),
            samples=tuple(samples),
            skipped=tuple(skipped),
        )
