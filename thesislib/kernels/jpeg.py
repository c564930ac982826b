"""Decode a batch of JPEGs already in memory straight into the rows of one preallocated batch buffer.

The bytes may be slices of a memory-mapped shard (``tfrecord``) or file contents (``files-jpeg``): no copy
is made of them. :func:`decode_batch` decodes a whole part of the batch per thread in one compiled loop
(:mod:`thesislib.kernels.turbojpeg`: TurboJPEG called from Numba, no GIL held, FFCV's way) where the system's
libturbojpeg and Numba are there; elsewhere, and for the rows that loop refuses, each image is decoded by
libjpeg-turbo through ``simplejpeg`` into its row of the batch (``decode_jpeg(..., buffer=row)``, no
intermediate array; the GIL is released while an image decodes, but taken for each image's Python call).

Exact: accurate integer DCT and fancy upsampling, the settings Pillow (the stores' reference decode) uses,
so the pixels are Pillow's (the tests compare them). Approximate, only where asked for by name
(``decode="fast"``, see :data:`DECODES`): libjpeg-turbo's fast integer DCT with fancy upsampling kept, the
setting FFCV 1.0.2 decodes with; its pixels differ from Pillow's by a few levels.

Threads: :func:`batch_threads` says how many threads one batch is split over: every usable core when the
batch is read in the main thread (``num_workers=0``: the loop reads each batch itself), one when it is read
on a background thread (the loader's ``num_workers`` threads each read a whole batch; splitting again would
only make the threads wait on each other) or in a DataLoader worker process (PyTorch gives each one thread).
"""

import threading

import numpy as np

from thesislib.kernels import turbojpeg

try:
    import simplejpeg
except ImportError:  # a dependency; without it the readers fall back to Pillow
    simplejpeg = None


# How a JPEG is decoded: "exact" (Pillow's settings and pixels, the default everywhere) or "fast" (fast DCT,
# FFCV's setting, approximate). A loader or reader is told which by name; nothing switches silently.
DECODES = {"exact": "accurate DCT and fancy upsampling, Pillow's settings: Pillow's pixels",
           "fast": "fast integer DCT (TJFLAG_FASTDCT), FFCV 1.0.2's setting: pixels a few levels off Pillow's"}


def available() -> bool:
    return simplejpeg is not None


def decode_jpeg_into(data, out: np.ndarray, fast: bool = False) -> np.ndarray:
    """Decode JPEG ``data`` (bytes, a memoryview or an array slice) into ``out`` ((H, W, 3) uint8, C order)
    with Pillow's settings (``fast``: the fast DCT, FFCV's setting, approximate). ValueError if the data does
    not decode or the image is not H x W."""
    image = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fast, fastupsample=False, buffer=out)
    if image.shape != out.shape:  # a smaller image fills only the buffer's start; a larger one is refused
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, expected {out.shape[1]}x{out.shape[0]}")
    return out


def decode_jpeg_fast_into(data, out: np.ndarray) -> np.ndarray:
    """:func:`decode_jpeg_into` with libjpeg-turbo's fast DCT (FFCV's setting): approximate pixels."""
    return decode_jpeg_into(data, out, fast=True)


def batch_threads(cores: int) -> int:
    """Threads to split one batch over: ``cores`` in the main thread (and at most torch's thread count,
    which PyTorch sets to 1 in DataLoader workers), 1 on any other thread (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        return 1
    import torch  # here, not at the top: listing the stores should not load PyTorch

    return max(1, min(cores, torch.get_num_threads()))


def is_fast(decode: str) -> bool:
    """True for ``"fast"``, False for ``"exact"``; a ThesisError naming the choices otherwise."""
    from thesislib.errors import choose

    return choose("decode", decode, DECODES) == "fast"


def decode_batch(parts, datas, out: np.ndarray, on_error, located: tuple = None, fast: bool = False) -> np.ndarray:
    """Decode each of ``datas`` (a sequence of JPEGs) into the matching row of ``out`` with the threads of
    ``parts`` (a :class:`~thesislib.kernels.parts.Parts`, see :func:`batch_threads`); ``on_error(row, exc)``
    is called for an image that does not decode exactly (it decodes the row another way or raises).

    The compiled TurboJPEG loop (:mod:`thesislib.kernels.turbojpeg`) decodes the batch where it can run,
    from ``located`` (every row's address and size, kept valid by the caller) where given; the rows it
    refuses, and every row where it cannot run, are decoded one by one through simplejpeg. ``fast``: the
    fast DCT (approximate, see :data:`DECODES`); ``on_error`` may still decode a refused row exactly."""
    threads = batch_threads(parts.threads)
    rows = range(len(datas))
    if turbojpeg.available() and turbojpeg.fits(out):
        located = located or turbojpeg.addresses_of(datas)
        flags = turbojpeg.FAST_FLAGS if fast else turbojpeg.EXACT_FLAGS
        rows = np.flatnonzero(turbojpeg.decode_located(parts, *located, out, threads, flags)).tolist()
        threads = 1  # the few rows left (damaged or odd images) are decoded in order
    if not rows:
        return out
    if simplejpeg is None:
        for row in rows:
            on_error(row, ValueError("simplejpeg is not installed"))
        return out

    def decode_rows(start: int, stop: int) -> None:
        for row in rows[start:stop]:
            try:
                decode_jpeg_into(datas[row], out[row], fast)
            except ValueError as exc:
                on_error(row, exc)

    parts.run(decode_rows, len(rows), threads)
    return out
