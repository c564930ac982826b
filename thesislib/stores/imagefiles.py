"""Image-file stores: ``<split>/<class>/<index:06d>.<ext>``, the ImageFolder layout, in six codecs.

Like webdataset's decoders, the codecs are a table keyed by name; a failure names the file and the fix.
Class folders are named ``<label:03d>_<class>`` so that they sort in label order and
``torchvision.datasets.ImageFolder`` gives the stored labels (that is also how :func:`read_back` reads them).

The ``files`` loader reads a batch in one call: the batch's files (in sorted index order) read and decoded
by a few threads into one preallocated array, each codec by the fastest decoder that gives Pillow's pixels
(see :class:`FilesReader` and :func:`exact_decoder`). The file list comes from the store's ImageFolder
layout, ordered by sample index.
"""

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from thesislib import remote
from thesislib.errors import ThesisError
from thesislib.stores.base import Reader, StoreSpec
from thesislib.stores.manifest import read_manifest
from thesislib.stores.pool import encoding_pool, map_ordered


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

KIND = "files"
STORES = [StoreSpec(f"files-{name}", KIND, "uint8", name, codec.lossless) for name, codec in CODECS.items()]
LOADER = "files"
READS_URLS = True  # read straight from a store at a URL (thesislib.remote)
SAMPLE_FILES = True  # one file per sample: the statistics report file sizes
CHUNK = 256  # images per task handed to a worker process, at most
CHUNK_BYTES = 4 << 20  # pixels per task, at most: Ctrl-C waits for the running tasks only (stores/pool.py)


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


def write_split(store_dir: Path, spec, split: str, images, labels, classes, progress=None) -> dict:
    """Write every image of a split; return the SHA-256 of the files' digests in index order."""
    return {"files_sha256": write_files(store_dir, split, images, labels, classes, spec.codec, progress)}


def layout(spec, shape) -> dict:
    codec = CODECS[spec.codec]
    return {"codec": spec.codec, "extension": codec.ext, "lossless": codec.lossless, "settings": codec.note}


def write_files(store_dir: Path, split: str, images, labels, classes, codec: str, progress=None) -> str:
    """Encode and write every image of a split (in worker processes); the SHA-256 of the files' digests."""
    paths = file_paths(store_dir, split, labels, classes, codec)
    for label, name in enumerate(classes):
        (store_dir / split / class_folder(label, name)).mkdir(parents=True, exist_ok=True)
    step = chunk_size(images)
    tasks = ((paths[i:i + step], images[i:i + step], codec) for i in range(0, len(paths), step))
    total = hashlib.sha256()
    with encoding_pool() as pool:  # Ctrl-C: workers ignore it, the parent cancels (see stores/pool.py)
        for digests in map_ordered(pool, _write_chunk, tasks):
            total.update(b"".join(digests))
            if progress is not None:
                progress.update(len(digests))
    return total.hexdigest()


def chunk_size(images) -> int:
    """Images per encoding task: :data:`CHUNK`, fewer for large images (at most :data:`CHUNK_BYTES`)."""
    return max(1, min(CHUNK, CHUNK_BYTES // max(1, int(np.prod(images.shape[1:])))))


def sample_index(file_name: str):
    """The sample index of a store file's name (``000042.png`` -> 42); None for any other name."""
    stem = file_name.split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def is_hidden(name: str) -> bool:
    """Hidden entries (``.ipynb_checkpoints``, ``.DS_Store``) are not part of a store: tools make them."""
    return name.startswith(".")


def class_labels(store_dir, split: str, classes) -> dict:
    """{class folder name: label} of a split, from the manifest's ``classes`` (folder
    ``<label:03d>_<class>``), never from the sorted folder names; hidden entries are ignored. A ThesisError
    names a folder the manifest does not know, or a class folder that is missing."""
    root = Path(store_dir) / split
    if not root.is_dir():
        raise ThesisError(f"{root} is missing: delete {store_dir} and run `python -m thesislib prepare` again")
    expected = expected_folders(classes)
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        if not is_hidden(entry.name) and entry.name not in expected:
            raise unknown_folder(entry.path, store_dir, expected)
    for name in expected:
        if not (root / name).is_dir():
            raise ThesisError(f"{root / name} (class {expected[name]} of the manifest) is missing: delete "
                              f"{store_dir} and run `python -m thesislib prepare` again")
    return expected


def expected_folders(classes) -> dict:
    return {class_folder(label, name): label for label, name in enumerate(classes)}


def unknown_folder(path, store_dir, expected) -> ThesisError:
    return ThesisError(f"{path} is not a class folder of the store's manifest (expected <label:03d>_<class>, "
                       f"e.g. {next(iter(expected))}): a store holds only what prepare wrote; remove it, or "
                       f"delete {store_dir} and run `python -m thesislib prepare` again")


def list_files(store_dir, split: str, classes=None, listed=None) -> tuple:
    """(paths ordered by sample index, labels int64) of a split, found by scanning its class folders (or,
    for a store at a URL, which need not list folders, in ``listed``: the manifest's file names); the label
    of a folder is the manifest's (``classes``; None: read from the store's manifest), see
    :func:`class_labels`."""
    if classes is None:
        classes = read_manifest(store_dir)["classes"]
    if listed is not None:
        return ordered_files(store_dir, split, listed_files(store_dir, split, classes, listed))
    root, found = Path(store_dir) / split, {}
    for folder, label in class_labels(store_dir, split, classes).items():
        for entry in os.scandir(root / folder):
            if is_hidden(entry.name):
                continue
            if not entry.is_file():
                raise ThesisError(f"{entry.path} is not a regular file (a FIFO or device would block the "
                                  f"reader): remove it, or delete {store_dir} and run prepare again")
            add_file(found, Path(entry.path), entry.name, label, store_dir)
    return ordered_files(store_dir, split, found)


def listed_files(store_dir, split: str, classes, listed) -> dict:
    """{sample index: (URL, label)} of a split of a store at a URL, from the manifest's file names."""
    expected, found = expected_folders(classes), {}
    for name in listed:
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != split:
            continue
        if parts[1] not in expected:
            raise unknown_folder(remote.join(store_dir, split, parts[1]), store_dir, expected)
        add_file(found, remote.join(store_dir, name), parts[2], expected[parts[1]], store_dir)
    return found


def add_file(found: dict, path, name: str, label: int, store_dir) -> None:
    """Record sample ``<index:06d>.<ext>`` (file ``name`` at ``path``) of class ``label`` in ``found``."""
    index = sample_index(name)
    if index is None or index in found:
        what = "is not named <index:06d>.<ext>" if index is None else f"repeats sample {index}"
        raise ThesisError(f"{path} {what}: a store holds only the files prepare wrote; delete "
                          f"{store_dir} and run `python -m thesislib prepare` again")
    found[index] = (path, label)


def ordered_files(store_dir, split: str, found: dict) -> tuple:
    """(paths, labels int64) of ``found`` in sample order; a ThesisError naming a file numbered beyond the
    split's samples, or else a missing sample."""
    beyond = sorted(index for index in found if index >= len(found))
    if beyond:
        raise ThesisError(f"{found[beyond[0]][0]} is not named <index:06d>.<ext> with an index below "
                          f"{len(found)}: a store holds only the files prepare wrote; delete {store_dir} and "
                          "run `python -m thesislib prepare` again")
    missing = sorted(set(range(len(found))) ^ set(found))
    if missing:
        raise ThesisError(f"{remote.join(store_dir, split)} lacks the file of sample {missing[0]}: delete "
                          f"{store_dir} and prepare again")
    ordered = [found[i] for i in range(len(found))]
    return [path for path, _ in ordered], np.array([label for _, label in ordered], dtype=np.int64)


def data_files(store_dir) -> list:
    """Every image file of the store; hidden folders and files (``.ipynb_checkpoints``) are not the store's."""
    root, found = Path(store_dir), []
    for split in ("train", "val"):
        for folder, folders, names in os.walk(root / split):
            folders[:] = [name for name in folders if not is_hidden(name)]  # os.walk descends only into these
            found.extend(Path(folder) / name for name in names if not is_hidden(name))
    return sorted(found)


def check_count(folder, found: int, expected: int) -> None:
    """A ThesisError if a split's folder holds another number of images than its manifest says."""
    if found != expected:
        raise ThesisError(f"{folder} holds {found} images, its manifest says {expected}: delete the store "
                          "folder and run prepare again")


def decode_checked(path, shape, data: bytes = None) -> np.ndarray:
    """The pixels of one image file (or of its fetched bytes ``data``), checked to be (H, W, 3) ``shape``; a
    ThesisError naming the file."""
    image = decode(path, data)
    if image.shape != tuple(shape):
        raise ThesisError(f"{path} is {image.shape[1]}x{image.shape[0]}, the store's images are "
                          f"{shape[1]}x{shape[0]}: delete the store folder and prepare again")
    return image


class FilesReader(Reader):
    """Batches of a split of an image-file store, decoded into one batch buffer.

    Local stores: the batch's files read and decoded by a few threads at once into the batch buffer
    (:mod:`thesislib.kernels.imagefiles`: the reads and decodes release the GIL), each with the fastest
    decoder that gives Pillow's pixels (:func:`exact_decoder`: TurboJPEG from Numba or ``simplejpeg`` for
    JPEG, OpenCV for PNG, a copy of the rows of the uncompressed BMP, Pillow for the other codecs; checked
    by the tests); JPEG and BMP files are read and decoded in one compiled loop without the GIL
    (:mod:`thesislib.kernels.filereads`; the paths are encoded once, when the reader opens). A file that its
    decoder refuses is decoded again by Pillow, which names what is wrong. A store at a URL: the batch's
    files fetched concurrently, then decoded by Pillow (exact pixels, whatever ``decode`` asks for).
    ``decode="fast"``: JPEGs with the fast DCT (:func:`fast_decoder`, approximate, FFCV's setting).
    """

    def __init__(self, store, split, decoder: str = None, decode: str = "exact"):
        from thesislib.kernels.imagefiles import FileDecoder
        from thesislib.kernels.jpeg import is_fast

        super().__init__(store, split)
        self.remote = remote.is_url(store.path)
        listed = store.manifest.get("files_sha256", {}) if self.remote else None
        self.paths, self.labels = list_files(store.path, split, store.classes, listed)
        check_count(remote.join(store.path, split), len(self.paths), self.shape[0])
        fast = is_fast(decode)  # "fast": FFCV's fast DCT for JPEG (approximate); lossless codecs: exact
        self.decode = FileDecoder(decoder or (fast_decoder if fast else exact_decoder)(store.spec.codec))

    def open(self):
        """A remote store's URLs; a local store's paths encoded once for the compiled reads."""
        from thesislib.kernels.filereads import PathTable

        return self.paths if self.remote else PathTable(self.paths)

    def read_from(self, handle, indices, out=None):
        images = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8) if out is None else out
        if self.remote:
            paths = [handle[index] for index in indices.tolist()]
            for row, (path, data) in enumerate(zip(paths, remote.read_many(paths))):  # one concurrent fetch
                images[row] = decode_checked(path, self.shape[1:], data)
        else:
            self.decode.decode_files(handle, np.asarray(indices), images, self.decode_slowly)
        return images, self.labels[indices]

    def decode_slowly(self, path, row) -> None:
        """Pillow decodes a file the fast decoder refused, and names the problem in the store's words."""
        row[...] = decode_checked(path, self.shape[1:])

    def reads_in_threads(self) -> bool:
        return not self.remote  # the decoders release the GIL; fetches from a URL go through processes

    def close_handle(self, handle) -> None:
        pass


def exact_decoder(codec: str) -> str:
    """The fastest decoder of :data:`thesislib.kernels.imagefiles.DECODERS` that gives Pillow's pixels for
    ``codec``: ``turbojpeg`` (else ``simplejpeg``) for JPEG and OpenCV (``opencv-png``) for PNG where they are installed, NumPy
    (``bmp``) for BMP, else Pillow."""
    from thesislib.kernels.imagefiles import unavailable_reason

    choices = {"jpeg": ["turbojpeg", "simplejpeg"], "png": ["opencv-png"], "bmp": ["bmp"]}.get(codec, [])
    return next((name for name in choices if unavailable_reason(name) is None), "pillow")


def fast_decoder(codec: str) -> str:
    """:func:`exact_decoder`, but for JPEG the fast DCT (FFCV's setting, approximate): ``turbojpeg-fast``
    (else ``simplejpeg-fast``); the lossless codecs have nothing to approximate."""
    from thesislib.kernels.imagefiles import unavailable_reason

    if codec != "jpeg":
        return exact_decoder(codec)
    return next((name for name in ("turbojpeg-fast", "simplejpeg-fast") if unavailable_reason(name) is None),
                "pillow")


DECODES = ("exact", "fast")  # how its JPEGs may be decoded (thesislib.kernels.jpeg.DECODES)


def reader(store, split: str, decode: str = "exact") -> FilesReader:
    return FilesReader(store, split, decode=decode)


def read_back(store_dir, split: str) -> tuple:
    import torchvision

    # is_valid_file: ImageFolder does not list .jp2 among its extensions, but Pillow reads it
    folder = torchvision.datasets.ImageFolder(Path(store_dir) / split, is_valid_file=lambda name: True,
                                              allow_empty=True)
    order = np.argsort([int(Path(path).stem) for path, _ in folder.samples])
    images = np.stack([np.asarray(folder[i][0].convert("RGB")) for i in order])
    return images, np.array([folder.targets[i] for i in order], dtype=np.int64)
