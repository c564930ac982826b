"""``zarr``: the Zarr v3 group ``data.zarr``; a batch is one orthogonal selection of its sorted rows.

With one sample per chunk (see :mod:`thesislib.stores.zarr`) a batch decompresses exactly its samples.
Zarr fetches the chunks of one selection concurrently; its codec pipeline is told to decode a whole batch
of chunks per call (``codec_pipeline.batch_size``), which reads about 1.3x faster than its default of one.
Opened lazily in the process that reads.
"""

import numpy as np
import zarr

from thesislib import remote
from thesislib.errors import ThesisError
from thesislib.loaders.base import BatchDataset, BatchLoader, check_split
from thesislib.stores import zarr as zarr_store

# what a damaged store raises: a missing or bad file (OSError), a chunk of the wrong size (ValueError), bad
# metadata (zarr's errors); and for a chunk that fails to decompress, a bare RuntimeError from numcodecs'
# Zstd codec (see is_decode_error)
DAMAGED = (OSError, ValueError, zarr.errors.BaseZarrError)


def open_split(path, split, shape=None):
    """(images array, labels ndarray) of ``split``; a ThesisError naming a missing or bad array."""
    try:
        group = zarr.open_group(remote.zarr_store(path), mode="r")
        images, labels = group[f"{split}/images"], np.asarray(group[f"{split}/labels"][:], dtype=np.int64)
    except (KeyError, *DAMAGED) as exc:
        raise ThesisError(f"cannot read {split} of {path} ({exc}): delete its store folder and run "
                          "`python -m thesislib prepare` again") from exc
    check_split(path, split, images.shape, len(labels), shape)
    return images, labels


def is_decode_error(exc: BaseException) -> bool:
    """True for the error of a chunk that fails to decompress (numcodecs raises a plain RuntimeError)."""
    return isinstance(exc, RuntimeError) and "decompress" in str(exc).lower()


class ZarrBatches(BatchDataset):
    def __init__(self, store, split):
        super().__init__()
        self.path, self.split = remote.join(store.path, zarr_store.FOLDER), split
        self.shape = store.shape(split)

    def open(self):
        return open_split(self.path, self.split, self.shape)

    def read(self, handle, indices):
        images, labels = handle
        try:
            with zarr.config.set({"codec_pipeline.batch_size": len(indices)}):
                return images.get_orthogonal_selection(indices), labels[indices]
        except (RuntimeError, *DAMAGED) as exc:  # a codec error names no file; say which store is damaged
            if isinstance(exc, RuntimeError) and not is_decode_error(exc):
                raise
            raise ThesisError(f"cannot read samples of {self.split} from {self.path} ({exc}): the store is "
                              "corrupt; delete its folder and run prepare again") from exc


class ZarrLoader(BatchLoader):
    name = "zarr"
    reads_urls = True
    store_kinds = ("zarr",)
    default_store = "zarr"
    batches_class = ZarrBatches
