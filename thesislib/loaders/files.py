"""``files``: the image-file stores (``files-jpeg`` by default, any of the six codecs), decoded by Pillow.

A batch is one call: the dataset decodes the batch's files (in sorted index order) into one preallocated
array. The file list comes from the store's ImageFolder layout, ordered by sample index.
"""

import numpy as np

from thesislib import remote
from thesislib.errors import ThesisError
from thesislib.loaders.base import BatchDataset, BatchLoader
from thesislib.stores import imagefiles


def check_count(folder, found: int, expected: int) -> None:
    """A ThesisError if a split's folder holds another number of images than its manifest says."""
    if found != expected:
        raise ThesisError(f"{folder} holds {found} images, its manifest says {expected}: delete the store "
                          "folder and run prepare again")


def decode(path, shape, data: bytes = None) -> np.ndarray:
    """The pixels of one image file (or its fetched bytes ``data``), checked to be (H, W, 3) ``shape``; a
    ThesisError naming the file."""
    image = imagefiles.decode(path, data)
    if image.shape != tuple(shape):
        raise ThesisError(f"{path} is {image.shape[1]}x{image.shape[0]}, the store's images are "
                          f"{shape[1]}x{shape[0]}: delete the store folder and prepare again")
    return image


class FileBatches(BatchDataset):
    """Batches of a split of an image-file store: each file decoded with Pillow."""

    def __init__(self, store, split):
        super().__init__()
        self.paths, self.labels = imagefiles.list_files(store.path, split)
        self.shape = store.shape(split)
        check_count(remote.join(store.path, split), len(self.paths), self.shape[0])
        self.remote = remote.is_url(store.path)

    def open(self):
        return self.paths

    def read(self, handle, indices):
        images = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        paths = [handle[index] for index in indices]
        blobs = remote.read_many(paths) if self.remote else [None] * len(paths)  # one concurrent fetch
        for row, (path, data) in enumerate(zip(paths, blobs)):
            images[row] = decode(path, self.shape[1:], data)
        return images, self.labels[indices]


class FilesLoader(BatchLoader):
    name = "files"
    reads_urls = True
    store_kinds = ("files",)
    default_store = "files-jpeg"
    batches_class = FileBatches
