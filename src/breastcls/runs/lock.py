"""Exclusive use of a run, cross-validation or evaluation folder by one process.

A process that creates or resumes a folder holds its lock file (:data:`LOCK_NAME`) for as long
as it works in it. The file records the holder's process id, host, purpose and start time, so
the error a second process gets names who holds the folder. On POSIX systems the lock itself is
an ``flock`` on that file, which the kernel drops when the holder exits in any way
(``SIGKILL``, a crash, a power cut): a lock file left behind is stale and the next process takes
it over. Where ``flock`` does not exist the file is created with ``O_EXCL`` and a file whose
writer is gone from this host (:func:`process_state`) is taken over.

Opening and locking the same path, then checking that the path still names the file that was
locked, makes exactly one of any number of racing processes the holder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from breastcls.errors import FolderInUseError, OutputError
from breastcls.io import check_writable_dir, read_regular_text

__all__ = [
    "LOCK_NAME",
    "FolderLock",
    "describe_holder",
    "exclusive_folder",
    "held_lock",
    "lock_folder",
    "lock_state",
    "locked_appender",
    "process_state",
    "writers_in_turn",
]

#: The lock file's name inside the folder it guards (JSON: pid, host, purpose, since).
LOCK_NAME = ".breastcls-lock.json"

# Attempts before giving up when the lock file keeps changing under a process (only a crowd of
# processes starting and ending on one folder at once does that).
_ATTEMPTS = 100

# The locks this process holds, by folder: a failing run reaches its lock's reserve through it.
_HELD: dict[Path, FolderLock] = {}


def process_state(record: Mapping[str, Any]) -> Literal["alive", "gone", "unknown"]:
    """Tell whether the process a record names (``pid`` and ``host``) still exists.

    ``unknown`` when the record names no process or another machine wrote it.
    """
    import psutil

    pid = record.get("pid")
    if record.get("host") != platform.node() or not isinstance(pid, int):
        return "unknown"
    return "alive" if psutil.pid_exists(pid) else "gone"


class FolderLock:
    """A folder held by this process; release it with :meth:`release` or a ``with`` block.

    Attributes:
        path: The folder.
    """

    def __init__(self, path: Path, descriptor: int, record: bytes) -> None:
        self.path = path
        self._descriptor: int | None = descriptor
        self._record = record

    @property
    def file(self) -> Path:
        """The lock file."""
        return self.path / LOCK_NAME

    @property
    def held(self) -> bool:
        """Whether this process still holds the folder."""
        return self._descriptor is not None

    def free_reserve(self) -> bool:
        """Give the space reserved in the lock file back to the disk (for a last status write on a
        full disk); return whether there was any."""
        if self._descriptor is None or os.fstat(self._descriptor).st_size <= len(self._record):
            return False
        os.ftruncate(self._descriptor, len(self._record))
        with contextlib.suppress(OSError):
            os.fsync(self._descriptor)  # lets the file system reuse the freed blocks at once
        return True

    def release(self) -> None:
        """Remove the lock file and let the folder go (again: nothing)."""
        if self._descriptor is None:
            return
        _HELD.pop(self.path.absolute(), None)
        with contextlib.suppress(OSError):
            if _names(self.file, self._descriptor):
                self.file.unlink()
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FolderLock({str(self.path)!r}, held={self.held})"


def held_lock(folder: Path) -> FolderLock | None:
    """The lock this process holds on ``folder``, if any."""
    return _HELD.get(Path(folder).absolute())


def lock_state(folder: Path) -> Literal["held", "stale", "none"]:
    """Tell, without taking it, whether a live process holds ``folder``: ``held``, ``stale``
    (a lock file whose holder died), or ``none`` (no lock file, or no ``flock`` here)."""
    path = Path(folder) / LOCK_NAME
    if sys.platform == "win32":  # pragma: no cover
        return "none"
    import fcntl

    try:
        # Without blocking: a FIFO under the lock file's name must not hang `breastcls runs`.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return "none"
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "held"
    except OSError:
        return "none"
    finally:
        os.close(descriptor)
    return "stale"


def _names(path: Path, descriptor: int) -> bool:
    """Whether ``path`` names the open file ``descriptor``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(read_regular_text(path))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_holder(record: Mapping[str, Any]) -> str:
    """The holder a lock record names, as an error message says it."""
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int):
        return "another process"
    where = "this machine" if host == platform.node() else f"host {host!r}"
    if "purpose" not in record:
        return f"process {pid} on {where}"
    return f"process {pid} on {where} ({record['purpose']} since {record.get('since', '?')})"


def _busy(folder: Path, record: Mapping[str, Any], hint: str) -> FolderInUseError:
    return FolderInUseError(f"{str(folder)!r} is in use by {describe_holder(record)}: {hint}")


def _take(descriptor: int, path: Path) -> Literal["held", "busy", "moved"]:
    """Lock the open lock file ``descriptor`` (at ``path``) without waiting: ``held`` when this
    process now holds the folder, ``busy`` when a live process does, ``moved`` when ``path`` no
    longer names the file (its holder released it meanwhile)."""
    if sys.platform == "win32":  # pragma: no cover - no flock: the O_EXCL creation decided
        return "held"
    import fcntl

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "busy"
    return "held" if _names(path, descriptor) else "moved"


def _open(path: Path) -> int | None:
    """Open (creating) the lock file; ``None`` when it must be looked at again."""
    if sys.platform == "win32":  # pragma: no cover - no flock: O_EXCL, stale by process id
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            if process_state(_read_record(path)) == "gone":
                with contextlib.suppress(OSError):
                    path.unlink()
            else:
                time.sleep(0.01)
            return None
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)


def lock_folder(folder: Path, *, purpose: str, hint: str, reserve: int = 0) -> FolderLock:
    """Take ``folder`` (which must exist) for this process.

    A lock file left by a process that died is taken over.

    Args:
        folder: The folder.
        purpose: What the holder does there (``train``, ``resume``, ``evaluate``), recorded.
        hint: What the user should do when another process holds it (the end of the message).
        reserve: Bytes to reserve on the folder's disk inside the lock file, given back with
            :meth:`FolderLock.free_reserve` so that a run stopped by a full disk can still
            record why (best effort: nothing is reserved when the disk is full already).

    Raises:
        FolderInUseError: Another live process holds the folder (named, with ``hint``).
        OutputError: The lock file cannot be written.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    record = {
        "pid": os.getpid(),
        "host": platform.node(),
        "purpose": purpose,
        "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    holder: dict[str, Any] = {}
    try:
        for _ in range(_ATTEMPTS):
            descriptor = _open(path)
            if descriptor is None:
                continue
            taken = _take(descriptor, path)
            if taken == "held":
                return _hold(folder, descriptor, record, reserve)
            os.close(descriptor)
            if taken == "moved":
                continue
            holder = _read_record(path)
            # An empty record, or a dead process's: the holder has not written its own yet.
            if holder and process_state(holder) != "gone":
                raise _busy(folder, holder, hint)
            time.sleep(0.01)
        raise _busy(folder, holder, hint)
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(
            f"Cannot lock {str(folder)!r} ({error.strerror or error}): fix the folder's "
            "permissions, or choose another one."
        ) from error


def _hold(folder: Path, descriptor: int, record: dict[str, Any], reserve: int) -> FolderLock:
    """Write the holder's record (and the reserve) into the lock file just taken."""
    content = (json.dumps(record) + "\n").encode("utf-8")
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, content, 0)
        if reserve > 0:
            # Trailing white space keeps the file valid JSON.
            try:
                os.pwrite(descriptor, b" " * reserve, len(content))
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                os.ftruncate(descriptor, len(content))
    except BaseException:
        with contextlib.suppress(OSError):
            (folder / LOCK_NAME).unlink()
        os.close(descriptor)
        raise
    lock = FolderLock(folder, descriptor, content)
    _HELD[folder.absolute()] = lock
    return lock


@contextlib.contextmanager
def exclusive_folder(folder: Path, *, purpose: str, hint: str) -> Iterator[FolderLock]:
    """Create ``folder`` (or take an existing one) for this process for the ``with`` block.

    When the block fails, the folder is removed if this call created it (with the parents it
    created, when they are left empty); a folder that existed before is left where it is.

    Raises:
        OutputError: The folder cannot be created or written, or another process holds it.
    """
    folder = Path(folder)
    check_writable_dir(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
        created = True
    except FileExistsError:
        created = False
    except OSError as error:
        raise OutputError(
            f"Cannot write to output folder {str(folder)!r}: {error.strerror or error}. "
            "Choose another folder or fix its permissions."
        ) from error
    if not folder.is_dir():
        raise OutputError(f"{str(folder)!r} is a file, not a folder: choose another folder.")
    # A process that loses the folder to another removes nothing: the folder is the other's.
    lock = lock_folder(folder, purpose=purpose, hint=hint)
    try:
        yield lock
    except BaseException:
        if created:
            _remove_created(folder, missing)
        raise
    finally:
        lock.release()


def _remove_created(folder: Path, missing: list[Path]) -> None:
    """Remove ``folder`` and the parents in ``missing`` (created by this process) left empty."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in missing[1:]:
        try:
            parent.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def locked_appender(path: Path) -> Iterator[int]:
    """Open ``path`` (created when missing) for appending, holding an exclusive ``flock`` on it.

    A second process waits for the first to close it, so a record numbered from the file's
    current content and then appended is never numbered twice or lost. Where ``flock`` does not
    exist the file is only opened in append mode (each ``os.write`` still lands whole).

    Yields:
        The file descriptor (``O_APPEND``): write each record with one ``os.write``.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(descriptor, fcntl.LOCK_EX)  # waits: an append takes milliseconds
        yield descriptor
        os.fsync(descriptor)
    finally:
        os.close(descriptor)  # closing drops the flock


@contextlib.contextmanager
def writers_in_turn(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself (no lock file) for the ``with`` block;
    a second process waits for the first one's block to end.

    For a file that several processes rewrite from what they find on disk (a slide job's
    ``summary.csv``): the look and the write of one process are not interleaved with another's.
    Where ``flock`` does not exist the block runs at once.
    """
    if sys.platform == "win32":  # pragma: no cover
        yield
        return
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # waits: the holders' blocks take milliseconds
        yield
    finally:
        os.close(descriptor)  # closing drops the flock
