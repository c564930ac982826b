"""Decode a batch of JPEGs in one compiled loop that holds no GIL: libjpeg-turbo's TurboJPEG API called from
Numba, as FFCV decodes (its ``imdecode`` is TurboJPEG called from a Numba-compiled loop).

Per image, :func:`thesislib.kernels.jpeg.decode_jpeg_into` (simplejpeg) costs a Python call, its keyword
parsing and a NumPy array made for the result; on a 32x32 CIFAR-10 image that is as long as the decode
itself, and it holds the GIL, so a second thread barely helps. Here one call decodes a whole part of a batch:
the loop over images is machine code (``numba.njit(nogil=True)``), calling ``tjDecompressHeader3`` and
``tjDecompress2`` through ``ctypes`` function pointers, so the threads of
:class:`~thesislib.kernels.parts.Parts` decode in parallel.

Exact: flags 0 (accurate integer DCT, fancy upsampling) are Pillow's settings, so the pixels are Pillow's
where the system's libjpeg-turbo agrees with Pillow's (the tests compare them). Hostile input: each image's
header is read first and an image whose size is not the batch's (or that does not parse) is never decoded into
the buffer; it and any image TurboJPEG reports an error or warning for get a nonzero status, and the caller
decodes those rows another way (which names the damaged sample).

Approximate, only when asked for by name: :data:`FAST_FLAGS` (``TJFLAG_FASTDCT``, the fast integer DCT with
fancy upsampling kept) is FFCV 1.0.2's setting (its ``libffcv.cpp`` passes ``TJFLAG_FASTDCT`` to
``tjDecompress2``); the pixels then differ from Pillow's by a few levels.

Needs the system library ``libturbojpeg`` (Debian/Ubuntu: ``libturbojpeg0``, installed by ``make
system-deps``) and Numba; :func:`unavailable_reason` says why not where either is missing, and the readers
then decode with simplejpeg as before.
"""

import ctypes
import ctypes.util
import functools
import threading

import numpy as np

TJPF_RGB = 0        # TurboJPEG pixel format: R, G, B bytes
EXACT_FLAGS = 0     # accurate integer DCT, fancy upsampling: libjpeg's defaults, Pillow's settings
FAST_FLAGS = 2048   # TJFLAG_FASTDCT: fast integer DCT (approximate), fancy upsampling; FFCV's setting
LIBRARY_NAMES = ("libturbojpeg.so.0", "libturbojpeg.so")


@functools.lru_cache(maxsize=None)
def library():
    """The loaded TurboJPEG library, or None."""
    names = [name for name in (ctypes.util.find_library("turbojpeg"),) if name] + list(LIBRARY_NAMES)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        declare(lib)
        return lib
    return None


def declare(lib) -> None:
    """The argument and result types of the four TurboJPEG functions used (TurboJPEG 2 API, also in 3)."""
    lib.tjInitDecompress.argtypes, lib.tjInitDecompress.restype = [], ctypes.c_void_p
    lib.tjDestroy.argtypes, lib.tjDestroy.restype = [ctypes.c_void_p], ctypes.c_int
    lib.tjDecompressHeader3.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.tjDecompressHeader3.restype = ctypes.c_int
    lib.tjDecompress2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.tjDecompress2.restype = ctypes.c_int


@functools.lru_cache(maxsize=None)
def unavailable_reason():
    """None if the compiled batch decoder can run here, else why not (one line)."""
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"needs numba ({exc}): pip install numba"
    if library() is None:
        return "needs the system library libturbojpeg (Debian/Ubuntu: apt-get install libturbojpeg0)"
    return None


def available() -> bool:
    return unavailable_reason() is None


@functools.lru_cache(maxsize=None)
def compiled_decode():
    """The Numba-compiled decode of one JPEG into one row of a batch: ``decode_at(handle, address, size, out,
    row, flags, dim) -> status`` (0: decoded; ``dim``, four int32, receives the header's width, height,
    subsampling and colour space). An image whose header does not parse or whose size is not the batch's
    is never decoded into the buffer (status 1). Shared by the loop below and the compiled file reads
    (:mod:`thesislib.kernels.filereads`)."""
    import numba

    lib = library()
    header, decompress = lib.tjDecompressHeader3, lib.tjDecompress2

    @numba.njit(nogil=True)  # not cached on disk: Numba cannot pickle the ctypes pointers
    def decode_at(handle, address, size, out, row, flags, dim):
        height, width = out.shape[1], out.shape[2]
        if header(handle, address, size, dim.ctypes.data, dim[1:].ctypes.data, dim[2:].ctypes.data,
                  dim[3:].ctypes.data) != 0:
            return 1
        if dim[0] != width or dim[1] != height:  # never decode into a row it would not fit
            return 1
        return decompress(handle, address, size, out[row].ctypes.data, width, width * out.shape[3], height,
                          TJPF_RGB, flags)

    return decode_at


@functools.lru_cache(maxsize=None)
def compiled_loop():
    """The Numba-compiled loop over a part of a batch, compiled once per process (about a second)."""
    import numba

    decode_at = compiled_decode()

    @numba.njit(nogil=True)
    def decode_rows(handle, addresses, sizes, out, start, stop, flags, dims, status):
        for row in range(start, stop):
            status[row] = decode_at(handle, addresses[row], sizes[row], out, row, flags, dims[row])

    return decode_rows


class Decompressor:
    """A TurboJPEG decompressor handle, destroyed with this object."""

    def __init__(self):
        self.destroy = library().tjDestroy  # kept here: at interpreter exit the module's names may be gone
        self.handle = library().tjInitDecompress()
        if not self.handle:
            raise MemoryError("tjInitDecompress failed")

    def __del__(self):
        if getattr(self, "handle", None):
            self.destroy(self.handle)
            self.handle = None


class Handles(threading.local):
    """One TurboJPEG decompressor per thread (a handle must not be shared by threads at once); a thread's
    decompressor is destroyed when the thread ends (its thread-local storage goes)."""

    def get(self) -> int:
        decompressor = getattr(self, "decompressor", None)
        if decompressor is None:
            decompressor = self.decompressor = Decompressor()
        return decompressor.handle


HANDLES = Handles()


def addresses_of(datas) -> tuple:
    """(addresses, sizes) as int64 arrays of the JPEGs ``datas`` (bytes, memoryviews or uint8 arrays, which
    must stay alive while they are decoded)."""
    addresses, sizes = np.empty(len(datas), np.int64), np.empty(len(datas), np.int64)
    for row, data in enumerate(datas):
        view = np.frombuffer(data, dtype=np.uint8)
        addresses[row], sizes[row] = view.ctypes.data, view.size
    return addresses, sizes


def fits(out: np.ndarray) -> bool:
    """Whether ``out`` is a batch buffer the loop can write: C-ordered (N, H, W, 3) uint8."""
    return out.dtype == np.uint8 and out.ndim == 4 and out.shape[3] == 3 and out.flags.c_contiguous


def decode_rows(datas: list, out: np.ndarray, flags: int = EXACT_FLAGS) -> np.ndarray:
    """:func:`decode_batch` in the calling thread alone."""
    return decode_batch(None, datas, out, 1, flags)


def decode_batch(parts, datas, out: np.ndarray, threads: int, flags: int = EXACT_FLAGS) -> np.ndarray:
    """Decode ``datas`` (JPEGs: bytes, memoryviews or uint8 arrays) into the rows of ``out`` ((N, H, W, 3)
    uint8, C order) with up to ``threads`` threads of ``parts``; returns each row's status (0: decoded;
    anything else: not decoded, or decoded with a TurboJPEG warning, so the caller decodes that row another
    way)."""
    return decode_located(parts, *addresses_of(datas), out, threads, flags)


def decode_located(parts, addresses: np.ndarray, sizes: np.ndarray, out: np.ndarray, threads: int,
                   flags: int = EXACT_FLAGS) -> np.ndarray:
    """:func:`decode_batch` of the JPEGs at ``addresses`` (``sizes`` bytes each, int64 arrays; the caller
    keeps that memory alive and unchanged until this returns)."""
    if not fits(out):
        raise ValueError(f"out must be a C-ordered (N, H, W, 3) uint8 array, not {out.dtype} {out.shape}")
    if len(addresses) != len(out) or len(sizes) != len(out):
        raise ValueError(f"{len(addresses)} addresses and {len(sizes)} sizes for {len(out)} rows")
    loop = compiled_loop()
    addresses, sizes = np.ascontiguousarray(addresses, np.int64), np.ascontiguousarray(sizes, np.int64)
    dims = np.zeros((len(out), 4), dtype=np.int32)
    status = np.ones(len(out), dtype=np.int32)

    def decode_part(start: int, stop: int) -> None:
        loop(HANDLES.get(), addresses, sizes, out, start, stop, flags, dims, status)

    if parts is None or threads == 1:
        decode_part(0, len(out))
    else:
        parts.run(decode_part, len(out), threads)
    return status
