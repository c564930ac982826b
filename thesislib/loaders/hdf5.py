"""``hdf5``: ``data.h5`` through h5py; a batch is one read of its sorted rows (a point selection).

The file is opened lazily in the process that reads, never before the DataLoader forks its workers: an
HDF5 handle inherited across a fork returns corrupt data. ``close()`` closes it (for ``bench --cold``).
"""

import h5py
import numpy as np

from thesislib import remote
from thesislib.errors import ThesisError
from thesislib.loaders.base import BatchDataset, BatchLoader, check_split
from thesislib.stores import hdf5


def corrupt(path, split, exc) -> ThesisError:
    return ThesisError(f"cannot read /{split} of {path} ({exc}): the file is truncated or corrupt; delete its "
                       "store folder and run `python -m thesislib prepare` again")


def open_split(path, split, shape=None):
    """(file, images dataset, labels array) of ``split``; a ThesisError naming a bad file (which is then
    closed again)."""
    try:
        file = h5py.File(remote.open_file(path) if remote.is_url(path) else path, "r")  # a URL: a file object
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


class Hdf5Batches(BatchDataset):
    def __init__(self, store, split):
        super().__init__()
        self.path, self.split, self.shape = remote.join(store.path, hdf5.FILE), split, store.shape(split)

    def open(self):
        return open_split(self.path, self.split, self.shape)

    def read(self, handle, indices):
        _, images, labels = handle
        try:
            return images[indices], labels[indices]
        except OSError as exc:
            raise ThesisError(f"cannot read samples of /{self.split} from {self.path} ({exc}): the file is "
                              "corrupt; delete its store folder and run prepare again") from exc

    def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle[0].close()


class Hdf5Loader(BatchLoader):
    name = "hdf5"
    reads_urls = True
    store_kinds = ("hdf5",)
    default_store = "hdf5"
    batches_class = Hdf5Batches
