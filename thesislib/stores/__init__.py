"""How images are written: the eleven stores of the contract, under ``DATA_DIR/<dataset>/<store>/``.

Every finished store holds ``manifest.json`` (see :mod:`thesislib.stores.manifest`); a folder without one
is an interrupted conversion and is never read. :func:`open_store` is how loaders find a store.
"""

from dataclasses import dataclass
from pathlib import Path

from thesislib import remote
from thesislib.errors import ThesisError, choose
from thesislib.paths import project_path


@dataclass(frozen=True)
class StoreSpec:
    name: str
    kind: str        # "files", "npy", "hdf5" or "zarr"
    dtype: str       # dtype of the stored pixels
    codec: str = ""  # image-file codec (kind "files" only)


STORES = {spec.name: spec for spec in [
    *(StoreSpec(f"files-{codec}", "files", "uint8", codec)
      for codec in ("jpeg", "png", "bmp", "tiff", "webp", "jp2")),
    StoreSpec("npy-uint8", "npy", "uint8"),
    StoreSpec("npy-float16", "npy", "float16"),
    StoreSpec("npy-float32", "npy", "float32"),
    StoreSpec("hdf5", "hdf5", "uint8"),
    StoreSpec("zarr", "zarr", "uint8"),
]}

LOSSLESS = [name for name in STORES if name not in ("files-jpeg", "files-webp")]


def get_store_spec(name: str) -> StoreSpec:
    return STORES[choose("store", name, STORES)]


def parse_store_list(text) -> list:
    """``"all"`` or a comma-separated list of store names (validated) as a list."""
    if isinstance(text, (list, tuple)):
        names = list(text)
    elif text.strip() == "all":
        names = list(STORES)
    else:
        names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ThesisError("--stores is empty: give 'all' or comma-separated names from " + ", ".join(STORES))
    return [get_store_spec(name).name for name in names]


def store_path(data_dir, dataset: str, store: str):
    """The store's folder: a Path, or a URL string when ``data_dir`` is one (see :mod:`thesislib.remote`)."""
    if remote.is_url(data_dir):
        return remote.join(data_dir, dataset, store)
    return project_path(data_dir) / dataset / store


def prepare_command(dataset: str, store: str, data_dir) -> str:
    return f"python -m thesislib prepare --dataset {dataset} --stores {store} --data-dir {data_dir}"


@dataclass(frozen=True)
class Store:
    """A finished store: its folder and its (verified) manifest. Read-only."""
    path: Path
    spec: StoreSpec
    manifest: dict

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def dtype(self) -> str:
        return self.spec.dtype

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def classes(self) -> list:
        return list(self.manifest["classes"])

    def count(self, split: str) -> int:
        return int(self._split(split)["count"])

    def shape(self, split: str) -> tuple:
        return tuple(self._split(split)["shape"])

    def _split(self, split: str) -> dict:
        return self.manifest["splits"][choose("split", split, self.manifest["splits"])]


def open_store(data_dir, dataset: str, store: str, hint: str = None) -> Store:
    """The finished store ``store`` of ``dataset``; a ThesisError naming the ``prepare`` to run if missing
    (``hint``: that command, when the caller knows more of it than the dataset, store and folder)."""
    from thesislib.datasets import get_dataset
    from thesislib.stores.manifest import read_manifest

    get_dataset(dataset)
    spec = get_store_spec(store)
    path = store_path(data_dir, dataset, store)
    if not remote.exists(remote.join(path, "manifest.json")):
        state = "is incomplete (no manifest.json)" if remote.exists(path) else "is not prepared"
        raise ThesisError(f"store {store} of {dataset} at {path} {state}: run "
                          f"`{hint or prepare_command(dataset, store, data_dir)}`")
    return Store(path, spec, read_manifest(path, dataset=dataset, store=store))
