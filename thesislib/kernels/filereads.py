"""Read a part of a batch's image files and decode each into its batch row, in one compiled loop that holds
no GIL.

From Python, a file costs ``os.open``, ``os.read`` and ``os.close``: three calls, each taking the GIL back
between system calls, so two threads reading a batch's small files wait on each other, and on a 32x32 image
those calls cost more than the decode. Here the loop over a part's files is machine code
(``numba.njit(nogil=True)``) calling the C library's ``open``, ``read`` and ``close`` through ctypes function
pointers (as :mod:`thesislib.kernels.turbojpeg` calls TurboJPEG): each file is read into the calling thread's
scratch buffer and decoded from there into its row, TurboJPEG for JPEG
(:func:`thesislib.kernels.turbojpeg.compiled_decode`, Pillow's settings or the fast DCT when asked for), a
flipped, channel-reversed copy for the uncompressed 24-bit BMP the ``files-bmp`` store writes (the bytes
Pillow gives: rows of B, G, R padded to 4 bytes, bottom-up unless the height is negative).

Hostile or odd files: the loop decodes only what it fully checks and gives every other row a nonzero status;
the caller then reads and decodes that row again in Python, which names what is wrong. Such rows: a file
that cannot be opened or read, one that fills the scratch buffer (it may hold more: the caller's
:class:`~thesislib.kernels.imagefiles.ReadSize` grows, and so does the next batch's buffer), a JPEG TurboJPEG
refuses or warns about, a BMP of another kind (palette, 32-bit, compressed), of another size or truncated.

Paths: a :class:`PathTable` encodes a split's paths once (NUL-terminated, in one byte array), so a batch
passes only its sample indices. A regular file that reads short has ended (as ``ReadSize`` assumes).

Needs Numba and a C library with ``open``/``read``/``close`` (any Linux or macOS); :func:`unavailable_reason`
says why not where missing, and the files are then read and decoded from Python as before.
"""

import ctypes
import functools
import os
import threading

import numpy as np

from thesislib.kernels import turbojpeg

STATUS_UNREAD = -1  # a row whose file could not be read whole (missing, unreadable, larger than the buffer)


@functools.lru_cache(maxsize=None)
def libc():
    """The C library's ``open``, ``read`` and ``close`` with their types."""
    lib = ctypes.CDLL(None)
    lib.open.argtypes, lib.open.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
    lib.read.argtypes, lib.read.restype = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t], ctypes.c_ssize_t
    lib.close.argtypes, lib.close.restype = [ctypes.c_int], ctypes.c_int
    return lib


@functools.lru_cache(maxsize=None)
def unavailable_reason():
    """None if files can be read in the compiled loop here, else why not (one line)."""
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"needs numba ({exc}): pip install numba"
    try:
        libc()
    except (OSError, AttributeError) as exc:
        return f"needs the C library's open/read/close through ctypes ({exc})"
    return None


def available() -> bool:
    return unavailable_reason() is None


class PathTable:
    """A split's file paths, kept as ``paths`` (str) and encoded once for the compiled loop: ``arena`` (the
    paths' bytes, each NUL-terminated) and ``offsets`` (where each starts)."""

    def __init__(self, paths):
        self.paths = [os.fspath(path) for path in paths]
        encoded = [os.fsencode(path) + b"\0" for path in self.paths]
        self.arena = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.offsets = np.zeros(len(encoded), dtype=np.int64)
        np.cumsum([len(entry) for entry in encoded[:-1]], out=self.offsets[1:])

    def __len__(self) -> int:
        return len(self.paths)


@functools.lru_cache(maxsize=None)
def compiled_reads() -> dict:
    """{codec: compiled loop}: ``loop(arena, offsets, indices, out, start, stop, scratch, status, extra...)``
    reads and decodes rows ``start:stop``; compiled once per process."""
    import numba

    lib = libc()
    c_open, c_read, c_close = lib.open, lib.read, lib.close
    read_only = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

    @numba.njit(nogil=True)
    def read_into(arena, offset, scratch):
        """Bytes read into ``scratch`` from the file whose path starts at ``arena[offset]``; -1 if it
        cannot be opened or read, the scratch size if the file may hold more."""
        fd = c_open(arena.ctypes.data + offset, read_only)
        if fd < 0:
            return -1
        size = c_read(fd, scratch.ctypes.data, scratch.size)
        c_close(fd)
        return size

    @numba.njit(nogil=True)
    def little(data, at, size):
        value = 0
        for byte in range(size):
            value |= np.int64(data[at + byte]) << (8 * byte)
        return value

    @numba.njit(nogil=True)
    def bmp_at(data, size, out, row):
        """The uncompressed 24-bit BMP in ``data[:size]`` into ``out[row]``; 0, or 2 for any other file."""
        if size < 54 or data[0] != 66 or data[1] != 77:  # "BM"
            return 2
        offset, header = little(data, 10, 4), little(data, 14, 4)
        width, height = little(data, 18, 4), little(data, 22, 4)
        planes, bits, compression = little(data, 26, 2), little(data, 28, 2), little(data, 30, 4)
        if height >= 1 << 31:
            height -= 1 << 32  # negative: stored top-down
        rows, columns = out.shape[1], out.shape[2]
        if header < 40 or planes != 1 or bits != 24 or compression != 0:
            return 2
        if width != columns or (height != rows and height != -rows):
            return 2
        stride = (3 * columns + 3) & ~3
        if size < offset + stride * rows:
            return 2
        for y in range(rows):
            start = offset + (rows - 1 - y if height > 0 else y) * stride
            for x in range(columns):
                out[row, y, x, 0] = data[start + 3 * x + 2]
                out[row, y, x, 1] = data[start + 3 * x + 1]
                out[row, y, x, 2] = data[start + 3 * x]
        return 0

    @numba.njit(nogil=True)
    def read_bmp_rows(arena, offsets, indices, out, start, stop, scratch, status):
        for row in range(start, stop):
            size = read_into(arena, offsets[indices[row]], scratch)
            if size < 0 or size >= scratch.size:
                status[row] = STATUS_UNREAD
            else:
                status[row] = bmp_at(scratch, size, out, row)

    loops = {"bmp": read_bmp_rows}
    if turbojpeg.available():
        decode_at = turbojpeg.compiled_decode()

        @numba.njit(nogil=True)
        def read_jpeg_rows(arena, offsets, indices, out, start, stop, scratch, status, handle, flags, dims):
            for row in range(start, stop):
                size = read_into(arena, offsets[indices[row]], scratch)
                if size < 0 or size >= scratch.size:
                    status[row] = STATUS_UNREAD
                else:
                    status[row] = decode_at(handle, scratch.ctypes.data, size, out, row, flags, dims[row])

        loops["jpeg"] = read_jpeg_rows
    return loops


def loop_unavailable(codec: str):
    """None if ``codec``'s files can be read and decoded in the compiled loop here, else why not."""
    reason = unavailable_reason() or (turbojpeg.unavailable_reason() if codec == "jpeg" else None)
    if reason is None and codec not in ("jpeg", "bmp"):
        reason = f"no compiled loop for {codec}"
    return reason


class Scratch(threading.local):
    """Each thread's buffer for one file (grown, never shrunk)."""

    def get(self, size: int) -> np.ndarray:
        buffer = getattr(self, "buffer", None)
        if buffer is None or buffer.size < size:
            buffer = self.buffer = np.empty(size, dtype=np.uint8)
        return buffer


SCRATCH = Scratch()


def read_rows(codec: str, table: PathTable, indices: np.ndarray, out: np.ndarray, capacity: int,
              flags: int = 0) -> np.ndarray:
    """Read and decode the files ``table[indices]`` into the rows of ``out`` (C-ordered (N, H, W, 3) uint8)
    in the calling thread; files of up to ``capacity - 1`` bytes are read whole. Returns each row's status
    (0: decoded; else the caller decodes that row another way). ``flags``: TurboJPEG's (JPEG only)."""
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    status = np.ones(len(out), dtype=np.int32)
    loop, scratch = compiled_reads()[codec], SCRATCH.get(capacity)[:capacity]  # reads at most capacity bytes
    if codec == "jpeg":
        dims = np.zeros((len(out), 4), dtype=np.int32)
        loop(table.arena, table.offsets, indices, out, 0, len(out), scratch, status, turbojpeg.HANDLES.get(),
             flags, dims)
    else:
        loop(table.arena, table.offsets, indices, out, 0, len(out), scratch, status)
    return status
