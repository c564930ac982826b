"""Decoding one source image with bounds, and cutting it to the dataset's square.

An image is decoded from bytes already read (see :mod:`thesislib.sources.files`), its header checked against
a pixel limit before its pixels are decoded (Pillow's decompression-bomb warning and error become the same
one-line error), warnings Pillow raises while decoding are kept off the terminal, and so are the lines that C
libraries (libtiff, libjpeg) write straight to file descriptor 2: they are folded into the error instead.
"""

import io
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager

import numpy as np
from PIL import Image

from thesislib.errors import ThesisError

MAX_PIXELS = 50_000_000   # an ImageFolder photo: 50 megapixels (8660 x 5773) is more than any camera's JPEG
REMOVE = "replace or remove the file"
MAX_DETAIL = 300          # characters of the decoder's own messages kept in the one-line error


@contextmanager
def native_messages(captured: list, sink=None):
    """Route file descriptor 2 to ``sink`` (a binary temporary file; one is made if None) for the block.

    What C libraries wrote there meanwhile is appended to ``captured`` as one line. Pass one ``sink`` to a
    loop of decodes: making a temporary file costs more than the redirection.
    """
    if sink is None:
        with tempfile.TemporaryFile() as own:
            with native_messages(captured, own):
                yield captured
        return
    fd = sink.fileno()
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield captured
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        written = os.lseek(fd, 0, os.SEEK_CUR)
        if written:
            captured.append(" ".join(os.pread(fd, written, 0).decode(errors="replace").split()))
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)


def check_pixels(image: Image.Image, name, max_pixels: int, shape=None) -> None:
    """Refuse an image whose header announces more than ``max_pixels`` (or a size other than ``shape``)."""
    width, height = image.size
    if shape is not None and (width, height) != tuple(shape):
        raise ThesisError(f"image {name} is {width}x{height}, not {shape[0]}x{shape[1]} as every image of "
                          f"this source is: {REMOVE}")
    if width * height > max_pixels:
        raise ThesisError(f"image {name} is {width}x{height}, more than the {max_pixels:,} pixels a source "
                          f"image may have (a decompression bomb?): {REMOVE}, or downscale it first")


def decode_rgb(data: bytes, name, max_pixels: int = MAX_PIXELS, shape=None, sink=None) -> Image.Image:
    """The image in ``data`` as RGB; a one-line ThesisError naming ``name`` if it is corrupt or too large.

    ``sink``: a temporary file for the C libraries' messages (see :func:`native_messages`).
    """
    messages = []
    try:
        with native_messages(messages, sink), warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                check_pixels(image, name, max_pixels, shape)
                image.load()
                return image.convert("RGB")
    except ThesisError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ThesisError(f"image {name} has more pixels than Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} "
                          f"(a decompression bomb?): {REMOVE}") from exc
    except Exception as exc:  # Pillow's plugins raise many kinds of error on crafted or damaged files
        detail = "; ".join([f"{type(exc).__name__}: {exc}", *messages])[:MAX_DETAIL]
        raise ThesisError(f"corrupt or unreadable image {name} ({detail}): {REMOVE}") from exc


def centre_square(image: Image.Image, size: int) -> np.ndarray:
    """The centre square of ``image`` resized to ``size`` x ``size`` (Lanczos), as uint8 HWC.

    Cropping before resizing keeps the work bounded by the output: a 1 x 10000 strip costs one 512 x 512
    resize, not a 512 x 5,120,000 one.
    """
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    box = (left, top, left + side, top + side)
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS, box=box))
