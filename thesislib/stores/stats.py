"""Dataset statistics of the thesis's section 2.5: bytes on disk per store and, for the formats that keep
one file per sample (their module sets ``SAMPLE_FILES``), the mean, minimum, maximum and median file size.
The stores, their order and their files come from the format registry."""

import numpy as np
import pandas as pd

from thesislib.stores import STORES, open_store, store_path


def file_sizes(store) -> np.ndarray:
    """Apparent sizes in bytes of every data file of ``store`` (both splits)."""
    return np.array([path.stat().st_size for path in store.data_files()], dtype=np.int64)


def store_row(store) -> dict:
    images = sum(store.count(split) for split in store.manifest["splits"])
    row = {"store": store.name, "kind": store.kind, "dtype": store.dtype, "images": images,
           "bytes_on_disk": store.manifest["bytes_on_disk"], "bytes_apparent": store.manifest["bytes_apparent"],
           "bytes_per_image": store.manifest["bytes_apparent"] / images}
    if getattr(store.format, "SAMPLE_FILES", False):
        sizes = file_sizes(store)
        row.update(file_mean=sizes.mean(), file_min=sizes.min(), file_max=sizes.max(),
                   file_median=float(np.median(sizes)))
    return row


def prepared_stores(data_dir, dataset: str) -> list:
    """Names of the finished stores of ``dataset``, in the registry's order."""
    return [name for name in STORES if (store_path(data_dir, dataset, name) / "manifest.json").exists()]


def store_statistics(data_dir, dataset: str, stores=None) -> pd.DataFrame:
    """One row per finished store of ``dataset`` (all prepared ones by default), with its sizes."""
    names = stores or prepared_stores(data_dir, dataset)
    stores = [open_store(data_dir, dataset, name) for name in names]
    table = pd.DataFrame([store_row(store) for store in stores])
    raw = table["images"] * np.prod(stores[0].shape("train")[1:])
    table["ratio_to_raw_uint8"] = table["bytes_apparent"] / raw
    return table.set_index("store")
