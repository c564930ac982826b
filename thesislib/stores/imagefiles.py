"""Image-file stores: ``<split>/<class>/<index:06d>.<ext>``, the ImageFolder layout, in six codecs.

Like webdataset's decoders, the codecs are a table keyed by name; a failure names the file and the fix.
Class folders are named ``<label:03d>_<class>`` so that they sort in label order and
``torchvision.datasets.ImageFolder`` gives the stored labels.
"""

import hashlib
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from thesislib import remote
from thesislib.errors import ThesisError


@dataclass(frozen=True)
class Codec:
    ext: str
    pil_format: str
    options: dict = field(default_factory=dict)
    lossless: bool = True
    note: str = ""


CODECS = {
    "jpeg": Codec("jpg", "JPEG", {"quality": 90, "subsampling": "4:2:0"}, False,
                  "quality 90, 4:2:0 chroma subsampling (libjpeg-turbo through Pillow)"),
    "png": Codec("png", "PNG", {"compress_level": 6}, True, "zlib level 6 (Pillow's default)"),
    "bmp": Codec("bmp", "BMP", {}, True, "24-bit, uncompressed"),
    "tiff": Codec("tiff", "TIFF", {"compression": "tiff_lzw"}, True, "LZW compression"),
    "webp": Codec("webp", "WEBP", {"quality": 90, "method": 4}, False, "lossy, quality 90, method 4"),
    "jp2": Codec("jp2", "JPEG2000", {"irreversible": False}, True,
                 "lossless (reversible 5/3 wavelet, OpenJPEG through Pillow)"),
}

CHUNK = 256  # images per task handed to a worker process


def class_folder(label: int, name: str) -> str:
    return f"{label:03d}_{name}"


def encode(image: np.ndarray, codec: str) -> bytes:
    """One (H, W, 3) uint8 image as the bytes of a ``codec`` file."""
    spec = CODECS[codec]
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format=spec.pil_format, **spec.options)
    return buffer.getvalue()


def decode(path, data: bytes = None) -> np.ndarray:
    """The pixels of one image file as (H, W, 3) uint8 (``data``: its bytes, already fetched from a URL); a
    ThesisError naming the file if it is corrupt."""
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ThesisError(f"corrupt or unreadable image {path} ({exc}): delete its store folder and run "
                          "`python -m thesislib prepare` again") from exc


def _write_chunk(args) -> list:
    """Worker: encode and write images; return each file's SHA-256 (in the chunk's order)."""
    paths, images, codec = args
    digests = []
    for path, image in zip(paths, images):
        data = encode(image, codec)
        with open(path, "wb") as file:
            file.write(data)
        digests.append(hashlib.sha256(data).digest())
    return digests


def file_paths(store_dir: Path, split: str, labels: np.ndarray, classes: list, codec: str) -> list:
    """Where each sample of ``split`` lives, in index order."""
    folders = [store_dir / split / class_folder(label, name) for label, name in enumerate(classes)]
    ext = CODECS[codec].ext
    return [folders[label] / f"{index:06d}.{ext}" for index, label in enumerate(labels)]


def write_split(store_dir: Path, split: str, images, labels, classes, codec: str, progress=None) -> str:
    """Write every image of a split; return the SHA-256 of the files' digests in index order."""
    paths = file_paths(store_dir, split, labels, classes, codec)
    for label, name in enumerate(classes):
        (store_dir / split / class_folder(label, name)).mkdir(parents=True, exist_ok=True)
    tasks = ((paths[i:i + CHUNK], images[i:i + CHUNK], codec) for i in range(0, len(paths), CHUNK))
    total = hashlib.sha256()
    with ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for digests in pool.map(_write_chunk, tasks):
            total.update(b"".join(digests))
            if progress is not None:
                progress.update(len(digests))
    return total.hexdigest()


def sample_index(file_name: str):
    """The sample index of a store file's name (``000042.png`` -> 42); None for any other name."""
    stem = file_name.split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def class_listing(root) -> list:
    """[(class folder name, [its file names])] of a split folder, folders sorted; ``root`` a path or URL
    (an HTTP server must list folders)."""
    if remote.is_url(root):
        return [(folder, remote.list_files(remote.join(root, folder))) for folder in remote.list_folders(root)]
    return [(folder, [entry.name for entry in os.scandir(root / folder)])
            for folder in sorted(entry.name for entry in os.scandir(root) if entry.is_dir())]


def list_files(store_dir, split: str) -> tuple:
    """(paths ordered by sample index, labels int64) of a split, found by scanning its class folders."""
    root = remote.join(store_dir, split) if remote.is_url(store_dir) else Path(store_dir) / split
    if not remote.is_url(root) and not root.is_dir():
        raise ThesisError(f"{root} is missing: delete {store_dir} and run `python -m thesislib prepare` again")
    found = {}
    for label, (folder, names) in enumerate(class_listing(root)):
        for name in names:
            path = remote.join(root, folder, name) if remote.is_url(root) else root / folder / name
            index = sample_index(name)
            if index is None or index in found:
                what = "is not named <index:06d>.<ext>" if index is None else f"repeats sample {index}"
                raise ThesisError(f"{path} {what}: a store holds only the files prepare wrote; delete "
                                  f"{store_dir} and run `python -m thesislib prepare` again")
            found[index] = (path, label)
    missing = sorted(set(range(len(found))) ^ set(found))
    if missing:
        raise ThesisError(f"{root} lacks the file of sample {missing[0]}: delete {store_dir} and prepare again")
    ordered = [found[i] for i in range(len(found))]
    return [path for path, _ in ordered], np.array([label for _, label in ordered], dtype=np.int64)
