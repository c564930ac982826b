"""Is a store in the page cache? Warm and cold reads, for ``bench --cold``.

* :func:`store_files`: the data files of a store (everything but ``manifest.json``);
* :func:`resident_fraction`: the share of their bytes in the page cache, asked page by page with
  ``mincore(2)`` on a read-only shared mapping of each file (through ctypes; mapping reads nothing);
* :func:`evict`: drop their clean pages with ``posix_fadvise(POSIX_FADV_DONTNEED)`` (no root needed).

The kernel keeps pages that are mapped by a live process or dirty: close memory maps first (``Loader.
close()``), and a store written moments ago is flushed (``fdatasync``) before its pages are dropped.
:func:`resident_fraction` returns NaN where the C library has no ``mincore`` (Windows); :func:`evict` needs
``posix_fadvise`` (Linux) and raises a ThesisError elsewhere.
"""

import ctypes
import ctypes.util
import math
import mmap
import os
from pathlib import Path

import numpy as np

from thesislib.errors import ThesisError
from thesislib.stores.manifest import MANIFEST

PAGE = mmap.PAGESIZE
_LIBC = {}


def libc():
    """The C library with ``mmap``, ``munmap`` and ``mincore`` typed for ctypes."""
    if "lib" not in _LIBC:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.mmap.restype = ctypes.c_void_p
        lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                             ctypes.c_long]
        lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
        _LIBC["lib"] = lib
    return _LIBC["lib"]


def store_files(store_dir) -> list:
    """Every data file of a store (sorted; ``manifest.json`` excluded)."""
    root = Path(store_dir)
    if not root.is_dir():
        raise ThesisError(f"store folder {root} does not exist: run `python -m thesislib prepare` first")
    return sorted(Path(dirpath) / name for dirpath, _, names in os.walk(root) for name in names
                  if name != MANIFEST)


def resident_pages(path) -> tuple:
    """(pages of ``path`` in the page cache, pages of the file)."""
    size = os.path.getsize(path)
    pages = -(-size // PAGE)
    if size == 0:
        return 0, 0
    lib = libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        address = lib.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap failed for {path}")
        try:
            vector = (ctypes.c_ubyte * pages)()
            if lib.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore failed for {path}")
            return int((np.frombuffer(vector, dtype=np.uint8) & 1).sum()), pages
        finally:
            lib.munmap(address, size)
    finally:
        os.close(fd)


def has_mincore() -> bool:
    """True where the C library has ``mincore`` (Linux, the BSDs, macOS)."""
    try:
        libc()
    except (OSError, AttributeError):  # no C library to load, or one without mincore
        return False
    return True


def resident_fraction(paths) -> float:
    """Share (0..1) of the pages of ``paths`` that are in the page cache; NaN where mincore is missing."""
    if not has_mincore():
        return math.nan
    resident = total = 0
    for path in paths:
        found, pages = resident_pages(path)
        resident, total = resident + found, total + pages
    return resident / total if total else math.nan


def read_through(paths, chunk: int = 8 << 20) -> int:
    """Read every file of ``paths`` once, sequentially, so that a read right after finds them in the page
    cache (what a "warm" run means: other stores read before may have pushed them out); returns the bytes
    read. A store larger than the free memory cannot stay whole: ``resident_fraction`` then says how much
    did."""
    buffer, total = bytearray(chunk), 0
    for path in paths:
        with open(path, "rb", buffering=0) as file:
            while count := file.readinto(buffer):
                total += count
    return total


def evict(paths) -> int:
    """Drop the clean cached pages of ``paths`` from the page cache; returns the bytes advised."""
    if not hasattr(os, "posix_fadvise"):
        raise ThesisError("--cold needs posix_fadvise (Linux): run without --cold on this system")
    advised = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            advised += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return advised
