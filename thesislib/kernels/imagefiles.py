"""Decode a batch of image files in parallel, straight into one preallocated (B, H, W, 3) uint8 buffer.

The table :data:`DECODERS` says which decoders give exactly Pillow's pixels (the store's reference decode)
and which only approximate them; an approximate one is used only when asked for by name. Pillow decodes
every codec of the image-file stores; the others one codec each, and the ``files`` loader picks the fastest
exact one per codec (``thesislib.stores.imagefiles.exact_decoder``).

What a file costs besides its decode is kept small. JPEG and BMP files (where Numba is there) are read and
decoded in one compiled loop over a part's files that holds no GIL (:mod:`thesislib.kernels.filereads`: the C
library's ``open``/``read``/``close``, then the decode, straight into the row); in Python (PNG, the other
codecs, and every file the loop refuses) a file is read with one ``os.open``, ``os.read`` and ``os.close`` (no
Python file object, no buffering layer: for a small image those cost as much as its decode). The reads and
the JPEG and PNG decodes release the GIL, so a few threads work on one batch at once (how many:
:func:`thesislib.kernels.jpeg.batch_threads`). The choices below were measured per file on the stores'
images (``benchmarks/peers.py`` and the ``files`` rows; the figures live in its output).

* JPEG: libjpeg-turbo's TurboJPEG API called from the compiled loop (:mod:`thesislib.kernels.turbojpeg`,
  FFCV's way) where the system library and Numba are there; else libjpeg-turbo through ``simplejpeg`` with
  Pillow's settings, decoded into the batch row (:mod:`thesislib.kernels.jpeg`). Either is cheaper per file
  than ``torchvision.io.decode_jpeg`` (which allocates a tensor per image), OpenCV (BGR, then a copy) and
  Pillow (a file object, an image object, a conversion).
* PNG: OpenCV (``cv2.imdecode``, then ``cvtColor`` into the batch row; both release the GIL) where it is
  installed, for the 8-bit RGB PNG the store writes: faster than Pillow per file (the same zlib inflate,
  without Pillow's image objects and conversion), and lossless, so the same pixels; any other PNG (palette,
  grey, alpha, 16-bit) goes to Pillow.
* BMP: the uncompressed 24-bit BMP the store writes is a header and bottom-up BGR rows, so it is decoded by
  one flipped, channel-reversed copy into the row (in the compiled loop, else by NumPy: :func:`bmp_into`)
  instead of Pillow's codec machinery; any other BMP variant (palette, 32-bit, compressed) is refused and
  decoded by Pillow.
"""

import io
import os
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from thesislib.errors import ThesisError
from thesislib.kernels import jpeg, turbojpeg
from thesislib.kernels.filereads import PathTable, loop_unavailable, read_rows
from thesislib.kernels.parts import Parts

READ_SIZE = 1 << 12  # bytes a file's first read asks for, at first (a larger file raises it: ReadSize)


def pillow_into(data: bytes, out: np.ndarray) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = np.asarray(image)
    if pixels.shape != out.shape:
        raise ValueError(f"image is {pixels.shape[1]}x{pixels.shape[0]}, expected {out.shape[1]}x{out.shape[0]}")
    out[...] = pixels
    return out


def bmp_into(data: bytes, out: np.ndarray) -> np.ndarray:
    """An uncompressed 24-bit BMP (``BM``, an info header of 40 bytes or more, 1 plane, no compression:
    rows of B, G, R bytes padded to 4 bytes, bottom-up unless the height is negative) into ``out``;
    ValueError for any other BMP, a truncated one or another size."""
    if len(data) < 54 or data[:2] != b"BM":
        raise ValueError("not a BMP file (no BM header)")
    offset, header = struct.unpack_from("<II", data, 10)
    width, height, planes, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    if header < 40 or planes != 1 or bits != 24 or compression != 0:
        raise ValueError(f"a {bits}-bit BMP with compression {compression}, not an uncompressed 24-bit one")
    if (abs(height), width) != out.shape[:2]:
        raise ValueError(f"image is {width}x{abs(height)}, expected {out.shape[1]}x{out.shape[0]}")
    stride = (3 * width + 3) & ~3
    if len(data) < offset + stride * abs(height):
        raise ValueError(f"truncated BMP ({len(data)} bytes, its header needs {offset + stride * abs(height)})")
    rows = np.frombuffer(data, np.uint8, stride * abs(height), offset).reshape(abs(height), stride)
    pixels = rows[:, :3 * width].reshape(abs(height), width, 3)
    out[...] = (pixels[::-1] if height > 0 else pixels)[..., ::-1]
    return out


def opencv_png_into(data, out: np.ndarray) -> np.ndarray:
    """An 8-bit RGB PNG (IHDR colour type 2, bit depth 8) decoded by OpenCV into ``out``; ValueError for any
    other PNG, a file that does not decode, or another size."""
    import cv2

    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or data[24:26] != b"\x08\x02":
        raise ValueError("not an 8-bit RGB PNG")
    width, height = struct.unpack_from(">II", data, 16)
    if (height, width) != out.shape[:2]:
        raise ValueError(f"image is {width}x{height}, expected {out.shape[1]}x{out.shape[0]}")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None or pixels.shape != out.shape:
        raise ValueError("OpenCV could not decode the PNG")
    cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=out)
    return out


def torchvision_into(data: bytes, out: np.ndarray) -> np.ndarray:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    pixels = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    if tuple(pixels.shape[1:]) != out.shape[:2]:
        raise ValueError(f"image is {pixels.shape[2]}x{pixels.shape[1]}, expected {out.shape[1]}x{out.shape[0]}")
    torch.from_numpy(out).copy_(pixels.permute(1, 2, 0))
    return out


@dataclass(frozen=True)
class Decoder:
    decode_into: object   # (file bytes, out (H, W, 3) uint8) -> out
    codecs: tuple         # store codecs it decodes
    exact: bool           # Pillow's decoding settings (accurate DCT, fancy upsampling): Pillow's pixels
    note: str
    module: str = ""      # the optional package it needs
    loop: str = ""        # the codec of the compiled loop that reads and decodes a part's files
                          # (thesislib.kernels.filereads) where it can run; decode_into then decodes the
                          # files it refuses
    check: object = None   # () -> None if it can run here, else why not (beyond importing ``module``)


DECODERS = {
    "pillow": Decoder(pillow_into, ("jpeg", "png", "bmp", "tiff", "webp", "jp2"), True,
                      "Pillow, the reference decode"),
    "bmp": Decoder(bmp_into, ("bmp",), True, "the uncompressed 24-bit BMP the store writes (a header and "
                   "bottom-up BGR rows) copied into the row, read and copied in a compiled loop over a part's "
                   "files where Numba is there, else by NumPy: the same bytes as Pillow's; other BMP variants "
                   "go to Pillow", loop="bmp"),
    "opencv-png": Decoder(opencv_png_into, ("png",), True, "OpenCV on the 8-bit RGB PNG the store writes "
                          "(lossless: Pillow's pixels); other PNG variants go to Pillow", "cv2"),
    "turbojpeg": Decoder(jpeg.decode_jpeg_into, ("jpeg",), True,
                         "libjpeg-turbo's TurboJPEG API from a Numba-compiled loop that reads and decodes a "
                         "part's files, no GIL held (FFCV's way), Pillow's settings; the files it refuses go "
                         "to simplejpeg, then Pillow. Needs the system's libturbojpeg and Numba", "numba",
                         loop="jpeg", check=turbojpeg.unavailable_reason),
    "turbojpeg-fast": Decoder(jpeg.decode_jpeg_fast_into, ("jpeg",), False,
                              "turbojpeg with the fast integer DCT (TJFLAG_FASTDCT), FFCV 1.0.2's setting: "
                              "approximate; the files it refuses go to simplejpeg-fast, then Pillow", "numba",
                              loop="jpeg", check=turbojpeg.unavailable_reason),
    "simplejpeg": Decoder(jpeg.decode_jpeg_into, ("jpeg",), True,
                          "libjpeg-turbo through simplejpeg, accurate DCT and fancy upsampling (Pillow's "
                          "settings); exact where it links the same libjpeg-turbo as Pillow: checked by the "
                          "tests and the benchmark", "simplejpeg"),
    "simplejpeg-fast": Decoder(jpeg.decode_jpeg_fast_into, ("jpeg",), False,
                               "libjpeg-turbo through simplejpeg, fast integer DCT, fancy upsampling "
                               "(FFCV's setting): approximate", "simplejpeg"),
    "torchvision": Decoder(torchvision_into, ("jpeg",), True,
                           "torchvision.io.decode_jpeg (its own libjpeg-turbo, Pillow's settings): exact where "
                           "the libjpeg-turbo versions agree; checked by the tests and the benchmark",
                           "torchvision"),
}


def unavailable_reason(name: str):
    """None if decoder ``name`` can run here, else why not."""
    decoder = DECODERS[name]
    if decoder.check is not None:
        return decoder.check()
    if not decoder.module:
        return None
    try:
        __import__(decoder.module)
    except ImportError as exc:
        return f"needs {decoder.module} ({exc}): pip install {decoder.module}"
    return None


class ReadSize:
    """How many bytes a file's first ``os.read`` asks for: enough for the largest file read so far (``os.read``
    allocates what it is asked for, so asking for far more than a small file holds costs as much as the
    read; asking for less costs a second read)."""

    def __init__(self, size: int = READ_SIZE):
        self.size = size

    def read(self, path) -> bytes:
        """The bytes of the file at ``path`` (a str is fastest): ``os.open``, ``os.read`` (more than one only
        for a file larger than any before), ``os.close``."""
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, self.size)
            if len(data) < self.size:  # a regular file reads short only at its end
                return data
            parts = [data]
            while part := os.read(fd, self.size):
                parts.append(part)
            data = b"".join(parts)
            self.size = max(self.size, 2 * len(data))
            return data
        finally:
            os.close(fd)


def read_bytes(path) -> bytes:
    """The bytes of the file at ``path``."""
    return ReadSize(1 << 16).read(path)


class FileDecoder:
    """Decode image files into batch buffers with ``threads`` threads (default: the usable cores).

    Picklable: the threads are made lazily in the process that decodes.
    """

    def __init__(self, decoder: str = "pillow", threads: int = None):
        if decoder not in DECODERS:
            raise ThesisError(f"unknown image decoder {decoder!r}: choose from {', '.join(DECODERS)}")
        reason = unavailable_reason(decoder)
        if reason:
            raise ThesisError(f"image decoder {decoder!r} {reason}")
        self.decoder = decoder
        self.parts = Parts(threads, "decode")
        self.decode_into = DECODERS[decoder].decode_into
        self.exact = DECODERS[decoder].exact
        self.loop = DECODERS[decoder].loop if DECODERS[decoder].loop and not loop_unavailable(
            DECODERS[decoder].loop) else ""
        self.flags = turbojpeg.EXACT_FLAGS if self.exact else turbojpeg.FAST_FLAGS
        self.read_size = ReadSize()
        if self.loop:
            compile_loop(self.loop, self.flags)  # now (about a second), not inside the first timed epoch

    def decode_one(self, path, out: np.ndarray) -> None:
        try:
            self.decode_into(self.read_size.read(path), out)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, RuntimeError) as exc:
            raise ThesisError(f"corrupt or unreadable image {path} ({exc}): delete its store folder and run "
                              "`python -m thesislib prepare` again") from exc

    def decode_part(self, table: PathTable, indices: np.ndarray, out: np.ndarray, on_error=None) -> None:
        """Decode the files ``table[indices]`` into the rows of ``out``: in the compiled loop where it can,
        the rows it refuses (or every row) one by one; ``on_error(path, row)``, if given, is called for a
        file that does not decode (it decodes the row another way or raises), else a ThesisError names it."""
        rows = range(len(indices))
        if self.loop and turbojpeg.fits(out):
            status = read_rows(self.loop, table, indices, out, self.read_size.size, self.flags)
            rows = np.flatnonzero(status).tolist()
        for row in rows:
            path = table.paths[indices[row]]
            try:
                self.decode_one(path, out[row])
            except ThesisError:
                if on_error is None:
                    raise
                on_error(path, out[row])

    def decode_files(self, table: PathTable, indices: np.ndarray, out: np.ndarray, on_error=None) -> np.ndarray:
        """Decode the files ``table[indices]`` into ``out`` (len(indices), H, W, 3), in order; contiguous
        parts per thread (see :func:`thesislib.kernels.jpeg.batch_threads`)."""
        self.parts.run(lambda a, b: self.decode_part(table, indices[a:b], out[a:b], on_error), len(indices),
                       jpeg.batch_threads(self.parts.threads))
        return out

    def __call__(self, paths: list, out: np.ndarray, on_error=None) -> np.ndarray:
        """:meth:`decode_files` of a list of paths."""
        return self.decode_files(PathTable(paths), np.arange(len(paths)), out, on_error)


def compile_loop(codec: str, flags: int) -> None:
    """Compile the loop for ``codec`` by running it over no rows."""
    read_rows(codec, PathTable([]), np.zeros(0, np.int64), np.zeros((0, 1, 1, 3), np.uint8), 1, flags)
