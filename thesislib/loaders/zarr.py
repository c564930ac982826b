"""``zarr``: the Zarr v3 group ``data.zarr``; a batch is one orthogonal selection of its sorted rows.

With one sample per chunk (see :mod:`thesislib.stores.zarr`) a batch decompresses exactly its samples.
Zarr fetches the chunks of one selection concurrently; its codec pipeline is told to decode a whole batch
of chunks per call (``codec_pipeline.batch_size``), which reads about 1.3x faster than its default of one.
Opened lazily in the process that reads.
"""

import numpy as np
import zarr

from thesislib.errors import ThesisError
from thesislib.loaders.base import BatchDataset, BatchLoader
from thesislib.stores import zarr as zarr_store


def open_split(path, split, shape=None):
    """(images array, labels ndarray) of ``split``; a ThesisError naming a missing or bad array."""
    try:
        group = zarr.open_group(path, mode="r")
        images, labels = group[f"{split}/images"], np.asarray(group[f"{split}/labels"][:], dtype=np.int64)
    except (OSError, KeyError, ValueError, zarr.errors.BaseZarrError) as exc:
        raise ThesisError(f"cannot read {split} of {path} ({exc}): delete its store folder and run "
                          "`python -m thesislib prepare` again") from exc
    if shape is not None and tuple(images.shape) != tuple(shape):
        raise ThesisError(f"{path} {split}/images has shape {images.shape}, its manifest says {shape}: "
                          "delete its store folder and run prepare again")
    return images, labels


class ZarrBatches(BatchDataset):
    def __init__(self, store, split):
        super().__init__()
        self.path, self.split, self.shape = store.path / zarr_store.FOLDER, split, store.shape(split)

    def open(self):
        return open_split(self.path, self.split, self.shape)

    def read(self, handle, indices):
        images, labels = handle
        try:
            with zarr.config.set({"codec_pipeline.batch_size": len(indices)}):
                return images.get_orthogonal_selection(indices), labels[indices]
        except Exception as exc:  # a codec error names no file; say which store is damaged
            raise ThesisError(f"cannot read samples of {self.split} from {self.path} ({exc}): the store is "
                              "corrupt; delete its folder and run prepare again") from exc

    def close(self) -> None:
        self.handle = None


class ZarrLoader(BatchLoader):
    name = "zarr"
    store_kinds = ("zarr",)
    default_store = "zarr"

    def __init__(self, store, split, **kwargs):
        super().__init__(store, split, **kwargs)
        self.dataset = ZarrBatches(store, split)
        open_split(self.dataset.path, split, self.dataset.shape)  # check now, reopen lazily
