"""Reading a source's files without trusting them: regular files only, bounded sizes, paths inside the tree.

A source is whatever the user points ``--source`` at, so every file is read through here: a FIFO, device or
socket is refused before it can block a read (opened non-blocking, checked with ``fstat``), a file larger than
its kind allows is refused before it is read, and a name taken from inside the source (an annotation file, an
archive member) must stay inside the source's folder once resolved.
"""

import os
import stat
import unicodedata
from pathlib import Path, PurePosixPath

from thesislib.errors import ThesisError

MB = 2**20


def read_regular(path: Path, limit: int, fix: str) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else a ThesisError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ThesisError(f"cannot read {path} ({exc.strerror}): {fix}") from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ThesisError(f"{path} is not a regular file (a FIFO, device or socket would block or never "
                              f"end): remove it or replace it with the real file; {fix}")
        check_size(info.st_size, limit, path, fix)
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise ThesisError(f"cannot read {path} ({exc.strerror}): {fix}") from exc
        check_size(len(data), limit, path, fix)   # it grew after fstat
        return data


def check_size(size: int, limit: int, name, fix: str) -> None:
    """Refuse a file or archive member of ``size`` bytes above ``limit`` (before reading it)."""
    if size > limit:
        raise ThesisError(f"{name} is {size / MB:.1f} MB, more than the {limit / MB:g} MB a file of its kind "
                          f"may have: {fix}")


def is_plain_name(name: str) -> bool:
    """True for one path component: not empty, no separator, not '.' or '..', no control character."""
    return (bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
            and not any(unicodedata.category(char) == "Cc" for char in name))


def check_relative(name: str, where, fix: str) -> str:
    """``name`` if it is a relative POSIX path with no '..' or empty part (an archive member's, say)."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or "\\" in name or any(not is_plain_name(p) for p in parts):
        raise ThesisError(f"{where} names {name!r}, a path that leaves the source (absolute, '..' or a control "
                          f"character): {fix}")
    return name


def inside(base: Path, name: str, where, fix: str) -> Path:
    """``base / name`` resolved (links followed), refused unless it stays inside ``base``."""
    root = base.resolve()
    path = (root / check_relative(name, where, fix)).resolve()
    if not path.is_relative_to(root):
        raise ThesisError(f"{where}: {name} resolves to {path}, outside {root} (a link out of the source): {fix}")
    return path


def tree_files(folder: Path) -> list:
    """The non-hidden entries of ``folder`` (recursively) that are not folders, sorted; hidden folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in filenames if not name.startswith("."))
    return sorted(found)


def check_regular(path: Path, fix: str) -> Path:
    """``path`` if it is a regular file (an archive given as the source), checked before anything opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ThesisError(f"cannot read {path} ({exc.strerror}): {fix}") from exc
    if not stat.S_ISREG(mode):
        raise ThesisError(f"{path} is not a regular file or folder (a FIFO, device or socket would block): {fix}")
    return path
