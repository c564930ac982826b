"""Dataset statistics of the thesis's section 2.5: bytes on disk per store and, for image files, the mean,
minimum, maximum and median file size."""

import os

import numpy as np
import pandas as pd

from thesislib.stores import STORES, open_store, store_path


def file_sizes(store) -> np.ndarray:
    """Apparent sizes in bytes of every image file of a ``files`` store (both splits)."""
    return np.array([entry.stat().st_size for split in store.manifest["splits"]
                     for folder in os.scandir(store.path / split)
                     for entry in os.scandir(folder.path)], dtype=np.int64)


def store_row(store) -> dict:
    images = sum(store.count(split) for split in store.manifest["splits"])
    row = {"store": store.name, "kind": store.kind, "dtype": store.dtype, "images": images,
           "bytes_on_disk": store.manifest["bytes_on_disk"], "bytes_apparent": store.manifest["bytes_apparent"],
           "bytes_per_image": store.manifest["bytes_apparent"] / images}
    if store.kind == "files":
        sizes = file_sizes(store)
        row.update(file_mean=sizes.mean(), file_min=sizes.min(), file_max=sizes.max(),
                   file_median=float(np.median(sizes)))
    return row


def store_statistics(data_dir, dataset: str, stores=None) -> pd.DataFrame:
    """One row per finished store of ``dataset`` (all prepared ones by default), with its sizes."""
    names = stores or [name for name in STORES if (store_path(data_dir, dataset, name) / "manifest.json").exists()]
    table = pd.DataFrame([store_row(open_store(data_dir, dataset, name)) for name in names])
    raw = table["images"] * np.prod(open_store(data_dir, dataset, names[0]).shape("train")[1:])
    table["ratio_to_raw_uint8"] = table["bytes_apparent"] / raw
    return table.set_index("store")
