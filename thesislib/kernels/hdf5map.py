"""An HDF5 dataset read at memory-map speed when its layout allows it.

A dataset stored *contiguous*, without filters (compression, shuffle, checksums) and inside its file (not
external) is one run of bytes at a known offset: h5py's public ``DatasetID.get_offset()`` gives it, and
``np.memmap`` maps it read-only. Any other layout (chunked, compressed, virtual, in a file opened through
another driver, or open for writing: its latest bytes may not be on disk yet) returns None, and the caller
reads through h5py.
"""

import h5py
import numpy as np

MAPPABLE_DRIVERS = ("sec2", "stdio")


def is_mappable(dataset: h5py.Dataset) -> bool:
    """True if ``dataset``'s bytes are one contiguous, unfiltered run in its own file."""
    plist = dataset.id.get_create_plist()
    return (dataset.chunks is None and not dataset.is_virtual and dataset.external is None
            and plist.get_nfilters() == 0 and dataset.file.driver in MAPPABLE_DRIVERS
            and dataset.file.mode == "r"
            and not dataset.dtype.hasobject and dataset.dtype.isnative and dataset.size > 0)


def contiguous_map(dataset: h5py.Dataset):
    """A read-only ``np.memmap`` of ``dataset``'s data, or None if its layout cannot be mapped (or its
    space is not allocated yet)."""
    if not is_mappable(dataset):
        return None
    offset = dataset.id.get_offset()
    if offset is None:
        return None
    return np.memmap(dataset.file.filename, dtype=dataset.dtype, mode="r", offset=offset,
                     shape=dataset.shape)
