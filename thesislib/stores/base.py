"""What a format is: one module under ``thesislib/stores/`` that writes, reads and describes its stores.

The registry (:data:`thesislib.stores.FORMATS`) maps the ``kind`` written in a store's manifest to its
format module; opening a store picks the module by that kind (as Mosaic Streaming picks a shard reader by the
format written on disk). Everything else (the store table, ``prepare``, the loaders' default stores, the
report's method order, the statistics, the page-cache and ``verify`` file lists, the interop tests) is
derived from the registry. Adding a format touches its own module, one line of ``FORMATS`` and its tests.

A format module defines:

* ``KIND``: the manifest's ``kind`` (the module's key in ``FORMATS``);
* ``STORES``: a list of :class:`StoreSpec`, the stores of this format (the first is the default store of the
  format's loader);
* ``LOADER``: the name under which the one batch loader over :func:`reader` is registered (``--loader``), or
  None if the format has no random-access reader (a streaming format's loader is a class of its own,
  listed in ``thesislib.loaders.CLASS_LOADERS``);
* ``write_split(store_dir, spec, split, images, labels, classes, progress) -> dict``: write one split into
  the (empty, temporary) store folder; ``images`` (N, H, W, 3) uint8 (may be a memory map), ``labels``
  (N,) int64, ``classes`` the class names, ``progress`` a tqdm bar to ``update(n)`` per n images written
  (or None). Returns the split's checksums for the manifest (a dict, may be empty);
* ``layout(spec, shape) -> dict``: the manifest's ``layout`` description (codec, chunking, why);
* ``data_files(store_dir) -> [Path]``: every data file of a finished store (no manifest, no lock files),
  sorted: what ``verify`` hashes, what ``bench --cold`` evicts and what the page-cache measures ask about;
* ``reader(store, split) -> Reader``: a :class:`Reader` of one split (only if ``LOADER`` is not None);
* ``read_back(store_dir, split) -> (images, labels)``: the whole split read with the format's own ordinary
  library and *no thesislib import* (the code a user of that ecosystem writes; the interop tests and
  notebook 03 call it): images (N, H, W, 3) ndarray, labels (N,) int64 ndarray;
* optionally ``DECODES = ("exact", "fast")``, for formats whose reader decodes JPEGs and can decode them
  the approximate, faster way when asked by name (:data:`thesislib.kernels.jpeg.DECODES`); then
  ``reader(store, split, decode="exact")``;
* optionally ``READS_URLS = True``: its reader reads a store at a URL directly (:mod:`thesislib.remote`);
* optionally ``unavailable_reason() -> str | None``: why the format's library cannot be used here (None:
  it can), shown by ``env`` for the format's loader;
* optionally ``mapped_split(store, split) -> (images memory map, labels ndarray)`` and
  ``images_file(store, split) -> Path``: for formats whose split is one memory-mappable array file (the
  ``memory``, ``cupy`` and ``dali`` loaders ask for these, not for the store's paths).

A format module imports only the standard library, NumPy, Pillow and ``thesislib.stores.base`` /
``thesislib.stores.manifest`` / ``thesislib.errors`` at its top; its own library (h5py, zarr, lmdb,
pyarrow, tensorflow, ...) inside the functions that need it, so that listing the stores costs nothing and a
missing library breaks only its own format. It never imports ``thesislib.stores`` (the registry imports
it) nor anything above the stores (``thesislib.loaders``, ``train``, ``bench``).

A :class:`Reader` is made in the main process and pickled to each DataLoader worker: it holds paths and
manifest facts only, and opens its files lazily, in the process that reads (an HDF5 or LMDB handle opened
before a fork breaks reads). ``read(indices, out=None)`` takes sorted, unique int64 indices and returns ``(images,
labels)``: images (B, H, W, 3) ndarray in the store's dtype, labels (B,) int64 ndarray. ``close()`` drops
open files and maps (the next ``read`` reopens them). A damaged, truncated or missing file raises one
:class:`~thesislib.errors.ThesisError` line naming the file and the fix (:func:`damaged`).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from thesislib import remote
from thesislib.errors import ThesisError


@dataclass(frozen=True)
class StoreSpec:
    """One store of the contract: its name (a folder under ``DATA_DIR/<dataset>/``), the kind of its format,
    the dtype of the pixels it holds, the image codec (image-file stores) and whether it is lossless."""
    name: str
    kind: str
    dtype: str = "uint8"
    codec: str = ""
    lossless: bool = True


def quote(exc) -> str:
    """A library's error text on one line (HDF5's and zarr's messages may span several)."""
    return " ".join(str(exc).split())


def damaged(path, problem: str) -> ThesisError:
    """The error for a store file that is missing, truncated or corrupt: names it and the fix.

    Raise it ``from`` the library's exception."""
    return ThesisError(f"{path} {quote(problem)}: the store is damaged; delete its folder and run "
                       "`python -m thesislib prepare` again (or `prepare --force`)")


def file_sha256(path, progress=None) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks; ``progress.update(bytes)`` after each block."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
            if progress is not None:
                progress.update(len(block))
    return digest.hexdigest()


class Reader:
    """One split of one store, read a batch at a time; picklable, opened lazily in the reading process.

    Subclasses implement :meth:`open` (returns a handle: open files, maps, the split's labels) and
    :meth:`read_from` (one batch from that handle). A handle with a ``close()`` method is closed by
    :meth:`close`; override :meth:`close_handle` for anything else.
    """

    def __init__(self, store, split: str):
        self.path = store.path if remote.is_url(store.path) else Path(store.path)  # a URL stays a string
        self.split = split
        self.shape = tuple(store.shape(split))
        self.dtype = store.dtype
        self.num_classes = len(store.classes)
        self.handle = None

    def open(self):
        raise NotImplementedError

    def read_from(self, handle, indices) -> tuple:
        """(images (B, H, W, 3), labels (B,)) of the sorted ``indices``."""
        raise NotImplementedError

    def read(self, indices, out=None) -> tuple:
        """(images, labels) of the sorted ``indices``; ``out``: a (B, H, W, 3) buffer of the store's dtype
        to write the images into (only readers whose :meth:`reads_in_threads` is True take one)."""
        handle = self.opened()
        return self.read_from(handle, indices) if out is None else self.read_from(handle, indices, out=out)

    def opened(self):
        """The open handle (opened now if it is not): a loader that reads with threads opens it first, in
        its own thread, so that the threads share one handle."""
        if self.handle is None:
            self.handle = self.open()
        return self.handle

    def reads_in_threads(self) -> bool:
        """True if batches may be read by several threads at once through one open handle, with the GIL
        released during the work (a gather, a codec), and :meth:`read` takes ``out``; the loader then reads
        ``num_workers > 0`` with threads, not worker processes. Asked after :meth:`opened`."""
        return False

    def check(self) -> None:
        """Open and close once, so that a missing or damaged file is named when a loader is made."""
        self.handle = self.open()
        self.close()

    def checked_labels(self, path, labels):
        """``labels`` if each is a class of the store; else a ThesisError naming ``path`` (see
        :func:`thesislib.stores.integrity.check_labels`)."""
        from thesislib.stores.integrity import check_labels

        return check_labels(path, labels, self.num_classes)

    def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            self.close_handle(handle)

    def close_handle(self, handle) -> None:
        if hasattr(handle, "close"):
            handle.close()

    def __getstate__(self):
        return {**self.__dict__, "handle": None}  # never an open handle into another process

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
