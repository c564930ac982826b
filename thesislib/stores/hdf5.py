"""The HDF5 store: ``data.h5`` with ``/<split>/images`` (N, H, W, 3) uint8 and ``/<split>/labels`` int64.

Layout, chosen for batch reads of shuffled samples: every loader reads a batch of sorted but scattered
indices, so any chunk holding several samples is read (and decompressed) whole for one of them. Photo pixels
compress poorly without loss (gzip saves little and costs CPU on every read), so the images are stored
uncompressed and *contiguous*: HDF5 then reads exactly the rows a batch asks for, like a memory map.

Read through a memory map of the images' bytes where the file is local (the layout above makes the dataset
one run of bytes at a known offset: see :class:`Hdf5Reader`), else through h5py, where a batch is one read
of its sorted rows (a point selection). The file is opened lazily
in the process that reads, never before the DataLoader forks its workers: an HDF5 handle inherited across a
fork returns corrupt data.
"""

from pathlib import Path

import numpy as np

from thesislib import remote
from thesislib.errors import ThesisError
from thesislib.stores.base import Reader, StoreSpec, quote

KIND = "hdf5"
STORES = [StoreSpec("hdf5", KIND, "uint8")]
LOADER = "hdf5"
READS_URLS = True  # read straight from a store at a URL (thesislib.remote)
FILE = "data.h5"
SLICE = 4096
LAYOUT = {"images": {"layout": "contiguous", "compression": None,
                     "why": "shuffled batch reads touch scattered rows; contiguous rows are read exactly, "
                            "no chunk is decompressed for one sample"},
          "labels": {"layout": "contiguous", "compression": None}}


def write_split(store_dir: Path, spec, split: str, images, labels, classes=None, progress=None) -> dict:
    import h5py

    with h5py.File(Path(store_dir) / FILE, "a") as file:
        group = file.require_group(split)
        out = group.create_dataset("images", shape=images.shape, dtype=np.uint8)
        for start in range(0, len(images), SLICE):
            block = np.asarray(images[start:start + SLICE])
            out[start:start + len(block)] = block
            if progress is not None:
                progress.update(len(block))
        group.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
    return {}


def layout(spec, shape) -> dict:
    return LAYOUT


def data_files(store_dir) -> list:
    return [Path(store_dir) / FILE]


def check_split(path, split: str, images_shape, labels_count: int, shape=None) -> None:
    """A ThesisError if a split's images do not have the manifest's ``shape`` or its labels are not one per
    image (array stores: ``path`` the file or folder that holds the split)."""
    shape = tuple(images_shape) if shape is None else tuple(shape)
    if tuple(images_shape) != shape:
        raise ThesisError(f"{path} {split}/images has shape {tuple(images_shape)}, its manifest says {shape}: "
                          "delete its store folder and run prepare again")
    if labels_count != shape[0]:
        raise ThesisError(f"{path} {split}/labels holds {labels_count} labels for {shape[0]} images: delete "
                          "its store folder and run prepare again")


def corrupt(path, split, exc) -> ThesisError:
    return ThesisError(f"cannot read /{split} of {path} ({quote(exc)}): the file is truncated or corrupt; delete its "
                       "store folder and run `python -m thesislib prepare` again")


def open_split(path, split, shape=None):
    """(file, images dataset, labels array) of ``split``; a ThesisError naming a bad file (which is then
    closed again)."""
    import h5py

    try:
        file = h5py.File(remote.open_ranged(path) if remote.is_url(path) else path, "r")  # URL: a file object
    except OSError as exc:
        raise corrupt(path, split, exc) from exc
    try:
        images, labels = file[f"{split}/images"], file[f"{split}/labels"][()]
        check_split(path, split, images.shape, len(labels), shape)
    except (OSError, KeyError) as exc:
        file.close()
        raise corrupt(path, split, exc) from exc
    except BaseException:
        file.close()
        raise
    return file, images, labels.astype(np.int64, copy=False)


class Hdf5Reader(Reader):
    """A local store's contiguous, unfiltered images (the layout this store writes) read through a
    read-only memory map at the dataset's offset (:func:`thesislib.kernels.hdf5map.contiguous_map`, h5py's
    public ``DatasetID.get_offset()``): a batch is one gather of its rows (:class:`~thesislib.kernels.gather.
    Gather`, as ``numpy``'s) into the given buffer. Any other layout, and a store at a URL, is read through
    h5py (one point selection)."""

    def __init__(self, store, split):
        from thesislib.kernels.gather import Gather

        super().__init__(store, split)
        self.file = remote.join(self.path, FILE)
        self.gather = Gather()

    def open(self):
        file, images, labels = open_split(self.file, self.split, self.shape)
        try:
            labels = self.checked_labels(f"{self.file}:/{self.split}/labels", labels)
            return file, self.mapped(images), labels
        except BaseException:
            file.close()
            raise

    def mapped(self, images):
        """``images`` as a memory map if its layout allows one in a local file, else the h5py dataset."""
        from thesislib.kernels.hdf5map import contiguous_map

        if remote.is_url(self.file):
            return images
        try:
            mapped = contiguous_map(images)
        except (OSError, ValueError) as exc:  # the file ends before the dataset's last byte
            raise corrupt(self.file, self.split, exc) from exc
        return images if mapped is None else mapped

    def read_from(self, handle, indices, out=None):
        _, images, labels = handle
        if isinstance(images, np.ndarray):
            return self.gather(images, indices, out), labels[indices]
        try:
            batch = images[indices]
        except OSError as exc:
            raise ThesisError(f"cannot read samples of /{self.split} from {self.file} ({quote(exc)}): the file is "
                              "corrupt; delete its store folder and run prepare again") from exc
        if out is None:
            return batch, labels[indices]
        out[...] = batch
        return out, labels[indices]

    def reads_in_threads(self) -> bool:
        return isinstance(self.opened()[1], np.ndarray)  # a memory map: gathers release the GIL; h5py does not

    def close_handle(self, handle) -> None:
        handle[0].close()


def reader(store, split: str) -> Hdf5Reader:
    return Hdf5Reader(store, split)


def read_back(store_dir, split: str) -> tuple:
    import h5py

    with h5py.File(Path(store_dir) / "data.h5", "r") as file:
        return file[f"{split}/images"][:], file[f"{split}/labels"][:]
