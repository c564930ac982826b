"""Decode a batch of image files in parallel, straight into one preallocated (B, H, W, 3) uint8 buffer.

Every decoder here releases the GIL while it decodes, so a few threads decode a batch at once. The table
:data:`DECODERS` says which decoders give exactly Pillow's pixels (the store's reference decode) and which
only approximate them; an approximate one is used only when asked for by name. Pillow decodes every codec
of the image-file stores; the others decode JPEG only (pick them for ``files-jpeg``).
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from thesislib.errors import ThesisError
from thesislib.kernels.parts import Parts


def pillow_into(data: bytes, out: np.ndarray) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = np.asarray(image)
    if pixels.shape != out.shape:
        raise ValueError(f"image is {pixels.shape[1]}x{pixels.shape[0]}, expected {out.shape[1]}x{out.shape[0]}")
    out[...] = pixels
    return out


def simplejpeg_into(data: bytes, out: np.ndarray, fast: bool = False) -> np.ndarray:
    import simplejpeg

    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    if (height, width) != out.shape[:2]:
        raise ValueError(f"image is {width}x{height}, expected {out.shape[1]}x{out.shape[0]}")
    simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fast, fastupsample=fast, buffer=out)
    return out


def simplejpeg_fast_into(data: bytes, out: np.ndarray) -> np.ndarray:
    return simplejpeg_into(data, out, fast=True)


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


DECODERS = {
    "pillow": Decoder(pillow_into, ("jpeg", "png", "bmp", "tiff", "webp", "jp2"), True,
                      "Pillow, the reference decode"),
    "simplejpeg": Decoder(simplejpeg_into, ("jpeg",), True,
                          "libjpeg-turbo through simplejpeg, accurate DCT and fancy upsampling (Pillow's "
                          "settings); exact where it links the same libjpeg-turbo as Pillow: checked by the "
                          "tests and the benchmark", "simplejpeg"),
    "simplejpeg-fast": Decoder(simplejpeg_fast_into, ("jpeg",), False,
                               "libjpeg-turbo through simplejpeg, fast integer DCT and plain upsampling "
                               "(FFCV-like): approximate", "simplejpeg"),
    "torchvision": Decoder(torchvision_into, ("jpeg",), True,
                           "torchvision.io.decode_jpeg (its own libjpeg-turbo, Pillow's settings): exact where "
                           "the libjpeg-turbo versions agree; checked by the tests and the benchmark",
                           "torchvision"),
}


def unavailable_reason(name: str):
    """None if decoder ``name`` can run here, else why not."""
    module = DECODERS[name].module
    if not module:
        return None
    try:
        __import__(module)
    except ImportError as exc:
        return f"needs {module} ({exc}): pip install {module}"
    return None


def read_bytes(path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


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

    def decode_one(self, path, out: np.ndarray) -> None:
        try:
            DECODERS[self.decoder].decode_into(read_bytes(path), out)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, RuntimeError) as exc:
            raise ThesisError(f"corrupt or unreadable image {path} ({exc}): delete its store folder and run "
                              "`python -m thesislib prepare` again") from exc

    def decode_range(self, paths, out: np.ndarray) -> None:
        for path, row in zip(paths, out):
            self.decode_one(path, row)

    def __call__(self, paths: list, out: np.ndarray) -> np.ndarray:
        """Decode ``paths`` into ``out`` (len(paths), H, W, 3), in order; contiguous parts per thread."""
        self.parts.run(lambda a, b: self.decode_range(paths[a:b], out[a:b]), len(paths))
        return out
