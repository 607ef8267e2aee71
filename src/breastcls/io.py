"""Atomic file output: every file breastcls writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from breastcls.errors import OutputError

__all__ = [
    "NotRegularFileError",
    "SafeCsvWriter",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable_dir",
    "csv_cell",
    "csv_records",
    "csv_rows",
    "csv_text",
    "ensure_writable_dir",
    "is_disk_full",
    "open_regular",
    "printable",
    "read_json_file",
    "read_regular_text",
    "replace_path",
]


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` when the block succeeds.

    The temporary file keeps ``target``'s suffix (Keras picks the format from it). On error the
    temporary file is removed and ``target`` is left as it was. The file gets the permissions a
    new file gets (``0o666`` less the umask), or keeps ``target``'s when it replaces one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary, mode = _new_temporary(target)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(target).st_mode)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _new_temporary(target: Path) -> tuple[Path, int]:
    """Create an empty hidden temporary file beside ``target``; return it and its mode.

    Unlike :func:`tempfile.mkstemp` (always ``0o600``), the file is created with ``0o666`` and
    the kernel applies the process's umask, without reading or changing the umask (which no
    thread-safe call can read).
    """
    for _ in range(tempfile.TMP_MAX):
        name = target.parent / f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}"
        try:
            handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            return name, stat.S_IMODE(os.fstat(handle).st_mode)
        finally:
            os.close(handle)
    raise FileExistsError(errno.EEXIST, f"No free temporary name beside {target}")


def printable(value: object) -> str:
    """``value`` as valid UTF-8 text: a file name's bytes that are not UTF-8 (lone surrogates,
    as ``os.fsdecode`` gives them) are shown as ``\\xNN``. For terminals, reports, plot titles."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# A spreadsheet runs a cell that begins with one of these as a formula (OWASP, "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)")


def csv_cell(value: object) -> object:
    """``value`` as a CSV cell that no spreadsheet runs as a formula.

    Text that begins with ``= + - @``, a tab or a carriage return gets a single quote in front
    (the OWASP rule); so does text that begins with a quote, so that :func:`csv_text` can undo
    it exactly. Numbers stay numbers: ints and floats, and text that is a whole number such as
    ``-0.5`` or ``-inf`` (a spreadsheet reads it as a number, not a formula), are written as
    they are.
    """
    if isinstance(value, int | float):
        return value
    text = str(value)
    if text.startswith((*_FORMULA_STARTS, _ESCAPE)) and not _NUMBER.fullmatch(text):
        return _ESCAPE + text
    return text


def csv_text(cell: str) -> str:
    """The text that :func:`csv_cell` wrote as ``cell`` (its leading quote removed)."""
    return cell[1:] if cell.startswith(_ESCAPE) else cell


def _text_or_as_is(value: Any) -> Any:
    return csv_text(value) if isinstance(value, str) else value


def csv_rows(handle: TextIO) -> list[list[str]]:
    """The rows of a CSV file that :class:`SafeCsvWriter` wrote, each cell's text as given."""
    return [[csv_text(cell) for cell in row] for row in csv.reader(handle)]


def csv_records(handle: TextIO) -> list[dict[Any, Any]]:
    """:class:`csv.DictReader`'s rows of a file that :class:`SafeCsvWriter` wrote, with each
    name and cell's text as given (a short row's missing cells are ``None``, a long row's extra
    cells a list under ``None``, as ``DictReader`` gives them)."""
    return [
        {_text_or_as_is(key): _text_or_as_is(value) for key, value in row.items()}
        for row in csv.DictReader(handle)
    ]


class SafeCsvWriter:
    """A ``csv.writer`` (``\n`` line ends) whose every cell goes through :func:`csv_cell`.

    Every CSV file breastcls writes is written through one: no cell can start a formula.
    """

    def __init__(self, handle: TextIO) -> None:
        self._writer = csv.writer(handle, lineterminator="\n")

    def writerow(self, row: Iterable[object]) -> None:
        """Write one row."""
        self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        """Write each row."""
        for row in rows:
            self.writerow(row)


def atomic_write_text(target: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically.

    A file name that is not valid UTF-8 reaches here as surrogate escapes (``os.fsdecode``); it is
    written back as its original bytes, so reading the file gives the same path.
    """
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8", errors="surrogateescape")


def atomic_write_json(target: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``target`` atomically."""
    atomic_write_text(target, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


class NotRegularFileError(OSError):
    """A file that breastcls reads is a FIFO, device, socket or folder, not a regular file."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(errno.EINVAL, f"{path} is {kind}, not a regular file", str(path))

    def __str__(self) -> str:
        return str(self.strerror)


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading in binary mode, refusing anything but a regular file.

    The file is opened without blocking and checked before a byte is read: a FIFO would block
    the read until something writes to it (forever, for ``breastcls runs``), a device such as
    ``/dev/zero`` never ends.

    Raises:
        NotRegularFileError: It is a FIFO, device, socket or folder (an ``OSError``).
        OSError: It cannot be opened.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a file")
            raise NotRegularFileError(path, kind)
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular_text(path: Path) -> str:
    """The UTF-8 text of a regular file (see :func:`open_regular`).

    Raises:
        OSError: The file cannot be read, or is not a regular file.
        UnicodeDecodeError: It is not UTF-8 (a ``ValueError``).
    """
    with open_regular(path) as handle:
        return handle.read().decode("utf-8")


def read_json_file(path: Path) -> Any:
    """Read a JSON file breastcls wrote (a regular file: see :func:`open_regular`).

    Raises:
        OSError: The file cannot be read, or is not a regular file.
        ValueError: It is not valid JSON (or not UTF-8).
    """
    return json.loads(read_regular_text(path))


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and check a file can be written in it.

    Raises:
        OutputError: The folder cannot be created or written to.
    """
    check_writable_dir(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(folder, error) from error


_CHOOSE_ANOTHER = "Choose another folder with --out or fix its permissions."


def _unwritable(folder: Path, error: OSError, hint: str = _CHOOSE_ANOTHER) -> OutputError:
    return OutputError(
        f"Cannot write to output folder {str(folder)!r}: {error.strerror or error}. {hint}"
    )


def check_writable_dir(folder: Path, *, hint: str = _CHOOSE_ANOTHER) -> None:
    """Check, without creating anything, that ``folder`` exists writable or can be created.

    The nearest existing ancestor must be a folder in which a file can be written (a temporary
    file is created there and removed).

    Args:
        folder: The folder.
        hint: What the user should do when it cannot be written (the end of the message).

    Raises:
        OutputError: ``folder`` or an ancestor is a file, or nothing can be written there.
    """
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is a file, not a folder")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check-"):
            pass
    except OSError as error:
        raise _unwritable(folder, error, hint) from error


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where the
    system cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(done == 0)


def replace_path(source: Path, target: Path) -> None:
    """Move ``source`` (a file or a folder) onto ``target``, replacing what is there.

    A file replaces a file atomically. A folder replaces a folder by swapping the two in one step
    where the system allows it (Linux), so a reader, or a process killed half-way, sees the old
    folder or the new one, never neither; elsewhere the old folder is set aside first and
    removed last. ``source`` and ``target`` must be on one file system.
    """
    import shutil

    source, target = Path(source), Path(target)
    if not (source.is_dir() and target.is_dir()):
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(source, target)
        return
    if _exchange(source, target):
        shutil.rmtree(source)  # holds the old folder now
        return
    aside = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    os.replace(target, aside)
    os.replace(source, target)
    shutil.rmtree(aside)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from, is a full disk or an exceeded quota
    (libraries such as TensorFlow's wrap the ``OSError``)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(seen) or "Disk quota exceeded" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
