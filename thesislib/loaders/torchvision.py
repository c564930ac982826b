"""``torchvision``: the baseline a user writes, ``ImageFolder`` and a per-sample ``DataLoader``.

Each sample is one ``__getitem__`` call (open, decode, convert) and the DataLoader collates the batch; this
is the per-image Python path the other loaders avoid. To deliver the same samples in the same order as the
other loaders, the sampler visits ImageFolder's positions in the order of the shared batch list. Images
are decoded by :func:`~thesislib.stores.imagefiles.decode_checked`, so a file of the wrong size is named as ``files``
names it.
"""

import functools
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import ImageFolder

from thesislib.loaders.base import Loader, iterate
from thesislib.stores import imagefiles
from thesislib.stores.imagefiles import check_count

EXTENSIONS = tuple(f".{codec.ext}" for codec in imagefiles.CODECS.values())


def is_image_file(path: str) -> bool:
    return path.lower().endswith(EXTENSIONS) and not imagefiles.is_hidden(Path(path).name)


class StoreImageFolder(ImageFolder):
    """ImageFolder whose classes are the store manifest's (folder ``<label:03d>_<class>`` -> label), not the
    sorted folder names: a hidden folder (``.ipynb_checkpoints``) is ignored, a foreign one refused."""

    def __init__(self, root, classes, **kwargs):
        self.manifest_classes = list(classes)
        super().__init__(root, **kwargs)

    def find_classes(self, directory):
        labels = imagefiles.class_labels(Path(directory).parent, Path(directory).name, self.manifest_classes)
        return list(labels), labels


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 pixels as a tensor (copied: Pillow's arrays are read-only)."""
    return torch.from_numpy(np.array(image))


def positions_by_index(dataset: ImageFolder, store_dir, split: str) -> np.ndarray:
    """ImageFolder's position of each sample index (file ``<index:06d>.<ext>``), the names checked as the
    ``files`` store checks its listing (:func:`~thesislib.stores.imagefiles.add_file`,
    :func:`~thesislib.stores.imagefiles.ordered_files`): a ThesisError names a file whose name is no index
    of the split, or that repeats another file's index."""
    found = {}
    for position, (path, _) in enumerate(dataset.samples):
        imagefiles.add_file(found, path, Path(path).name, position, store_dir)  # the position in the label's place
    return imagefiles.ordered_files(store_dir, split, found)[1]


class TorchvisionLoader(Loader):
    name = "torchvision"
    store_kinds = ("files",)
    default_store = "files-jpeg"

    def __init__(self, store, split, **kwargs):
        super().__init__(store, split, **kwargs)
        checked_decode = functools.partial(imagefiles.decode_checked, shape=store.shape(split)[1:])  # size checked per image
        self.dataset = StoreImageFolder(str(store.path / split), store.classes, loader=checked_decode,
                                        transform=to_tensor, is_valid_file=is_image_file, allow_empty=True)
        check_count(store.path / split, len(self.dataset), self.num_samples)
        self.positions = positions_by_index(self.dataset, store.path, split)

    # allow_empty: a small validation split (scale 0.01 of Tiny ImageNet: 100 images, 200 classes) leaves
    # some class folders empty; ImageFolder still numbers every folder, so labels stay those of the manifest.

    def __iter__(self):
        order = self.positions[np.concatenate(self.batches())].tolist()
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=order, num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available())
        yield from iterate(loader)
