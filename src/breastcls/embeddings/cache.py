"""The embedding cache: a frozen extractor's embeddings, computed once per image and reused.

One folder per extractor version and preprocessing, in the user's cache folder
(:func:`~breastcls.inference.runtime.cache_dir`): ``embeddings/<key>/``, where the key is the
SHA-256 of the extractor file's SHA-256, the input size, the resizing, the mean and standard
deviation and the output taken (:meth:`~breastcls.embeddings.extractor.LoadedExtractor`). Inside,
``index.json`` says what the folder holds (the extractor's options, its file hash, the embedding
dimension) and each ``shard-*.npz`` holds rows of embeddings (float16) with their keys: the hash
of the image's pixels as the extractor receives them (resized to its input size; a test-time
augmentation's copy is its own pixels, so its own entry).

A shard is written whole to a hidden temporary file beside the folder's shards and renamed
into place, so a killed ``breastcls embed`` leaves complete shards only (and at most the hidden
temporary it was writing, which is never read) and the next run starts where it stopped; the
shards present are the cache (two processes embedding at once each add their own shards, and
an image embedded twice is harmless).
"""

from __future__ import annotations

import hashlib
import secrets
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.embeddings.extractor import FrozenExtractor, LoadedExtractor, extractor_key
from breastcls.errors import OutputError
from breastcls.io import atomic_path, atomic_write_json, read_json_file

__all__ = ["CachedEmbedder", "EmbeddingCache", "pixel_keys"]

FloatArray = npt.NDArray[np.float32]
_INDEX = "index.json"


def pixel_keys(images: npt.NDArray[Any]) -> list[str]:
    """Each image's key: the SHA-1 of its shape and float32 pixels (hashed in place; SHA-1 is
    the fastest of hashlib's on this data, and a cache key needs no resistance to attack)."""
    batch = np.ascontiguousarray(images, dtype=np.float32)
    keys = []
    for image in batch:
        digest = hashlib.sha1(str(image.shape).encode(), usedforsecurity=False)
        digest.update(memoryview(image).cast("B"))
        keys.append(digest.hexdigest()[:32])
    return keys


class EmbeddingCache:
    """The cache folder of one extractor version and preprocessing (see the module)."""

    def __init__(self, folder: Path, description: dict[str, Any]) -> None:
        self.folder = folder
        self.description = description
        self._rows: dict[str, npt.NDArray[np.float16]] = {}
        self._pending_keys: list[str] = []
        self._pending_rows: list[npt.NDArray[np.float16]] = []
        self._read_shards()

    @classmethod
    def open(cls, spec: FrozenExtractor, sha256: str, root: Path | None = None) -> EmbeddingCache:
        """The cache of ``spec``'s extractor (file hash ``sha256``) under ``root`` (default:
        ``<cache_dir>/embeddings``)."""
        from breastcls.inference.runtime import cache_dir

        key = extractor_key(spec, sha256)
        base = root if root is not None else cache_dir() / "embeddings"
        description = {"key": key, "extractor": spec.to_dict(), "sha256": sha256}
        return cls(base / key[:32], description)

    def __len__(self) -> int:
        return len(self._rows)

    def _read_shards(self) -> None:
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as stored:
                    keys, rows = stored["keys"], stored["embeddings"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue  # written whole or not at all; a damaged one is recomputed
            self._rows.update(zip((str(k) for k in keys), rows, strict=True))

    def lookup(self, keys: list[str]) -> list[npt.NDArray[np.float16] | None]:
        """The stored row of each key, ``None`` where there is none."""
        return [self._rows.get(key) for key in keys]

    def add(self, keys: list[str], rows: npt.NDArray[np.float16]) -> None:
        """Keep rows in memory until :meth:`flush` writes them."""
        for key, row in zip(keys, rows, strict=True):
            self._rows[key] = row
        self._pending_keys.extend(keys)
        self._pending_rows.extend(rows)

    def flush(self) -> None:
        """Write the rows added since the last flush as one shard (atomically).

        Raises:
            OutputError: The cache folder cannot be written.
        """
        if not self._pending_keys:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            index = self.folder / _INDEX
            if not index.is_file():
                dimension = int(self._pending_rows[0].shape[0])
                atomic_write_json(index, {**self.description, "dimension": dimension})
            target = self.folder / f"shard-{secrets.token_hex(8)}.npz"
            with atomic_path(target) as temporary, open(temporary, "wb") as handle:
                np.savez(
                    handle,
                    keys=np.asarray(self._pending_keys, dtype="U32"),
                    embeddings=np.stack(self._pending_rows).astype(np.float16),
                )
        except OSError as error:
            raise OutputError(
                f"Cannot write the embedding cache {self.folder} ({error.strerror or error}): "
                "point BREASTCLS_CACHE_DIR at a writable folder with free space."
            ) from error
        self._pending_keys, self._pending_rows = [], []

    def index(self) -> dict[str, Any]:
        """``index.json``: the extractor, its file hash and the embedding dimension (empty
        before the first shard)."""
        index = self.folder / _INDEX
        found = read_json_file(index) if index.is_file() else {}
        return found if isinstance(found, dict) else {}


class CachedEmbedder:
    """Embeddings of images through the cache: stored rows are reused, the others computed by
    the extractor (opened only when one is needed) and kept.

    ``extractor``, when given, is the extractor already opened (else it is opened on first
    use). With ``cached=False`` nothing is looked up or stored: whole-slide tiles are seen
    once, and keeping hundreds of thousands of them per slide would grow the user's cache
    (read whole by every later process) without end.

    Attributes:
        spec: The extractor's options.
        sha256: Its file's SHA-256.
        cache: Its cache folder (``None`` when not cached).
        computed: Images the extractor embedded so far.
        reused: Images found in the cache so far.
    """

    def __init__(
        self,
        spec: FrozenExtractor,
        *,
        sha256: str | None = None,
        root: Path | None = None,
        extractor: LoadedExtractor | None = None,
        cached: bool = True,
    ) -> None:
        from breastcls.inference.runtime import model_sha256

        self.spec = spec
        self.sha256 = sha256 if sha256 is not None else model_sha256(spec.path)
        self.cache = EmbeddingCache.open(spec, self.sha256, root) if cached else None
        self._extractor = extractor
        self.computed = 0
        self.reused = 0

    @property
    def extractor(self) -> LoadedExtractor:
        """The opened extractor (opened and checked on first use)."""
        if self._extractor is None:
            self._extractor = self.spec.load()
        return self._extractor

    def embeddings(self, images: npt.NDArray[Any], *, flush: bool = True) -> FloatArray:
        """The ``(n, d)`` embeddings of ``(n, size, size, 3)`` 0-255 images, float16 values as
        float32 whether they come from the cache or the extractor; with ``flush`` the new ones
        are written as a shard at once."""
        if self.cache is None:
            self.computed += len(images)
            return self.extractor.embed(np.asarray(images)).astype(np.float16).astype(np.float32)
        keys = pixel_keys(images)
        found = self.cache.lookup(keys)
        missing = [i for i, row in enumerate(found) if row is None]
        self.reused += len(keys) - len(missing)
        if missing:
            pixels = np.asarray(images)
            todo = pixels if len(missing) == len(keys) else pixels[missing]
            fresh = self.extractor.embed(todo).astype(np.float16)
            self.cache.add([keys[i] for i in missing], fresh)
            for i, row in zip(missing, fresh, strict=True):
                found[i] = row
            self.computed += len(missing)
        if flush:
            self.cache.flush()
        return np.stack([row for row in found if row is not None]).astype(np.float32)

    def uncached(self) -> CachedEmbedder:
        """The same extractor (opened here once, then shared) with no cache."""
        return CachedEmbedder(self.spec, sha256=self.sha256, extractor=self.extractor, cached=False)
