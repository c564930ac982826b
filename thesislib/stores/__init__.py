"""How images are written: the stores of the contract (``docs/CONTRACT.md``), under
``DATA_DIR/<dataset>/<store>/``, one format module each, chosen through one registry.

:data:`FORMATS` is the registry: manifest ``kind`` -> format module, one line per format, in the order the
report lists methods. What a format module must define is written in :mod:`thesislib.stores.base`. From the
registry come :data:`STORES` (every store of every format), :data:`LOSSLESS`, :func:`format_of` (the
module of a kind), :func:`read_back` (a split read by its ecosystem's own tool) and, in
:mod:`thesislib.loaders`, the batch loaders and their default stores.

Every finished store holds ``manifest.json`` (see :mod:`thesislib.stores.manifest`) with the SHA-256 of each
data file; a folder without one is an interrupted conversion and is never read. :func:`open_store` is how
loaders find a store; :func:`verify_store` checks its files against the manifest.
"""

import importlib
from dataclasses import dataclass
from pathlib import Path

from thesislib import remote
from thesislib.errors import ThesisError, choose
from thesislib.paths import project_path
from thesislib.stores.base import StoreSpec, damaged, file_sha256  # noqa: F401  (StoreSpec: re-exported)

FORMATS = {  # manifest kind -> format module: one line per format, in the report's order
    "files": "thesislib.stores.imagefiles",
    "npy": "thesislib.stores.npy",
    "hdf5": "thesislib.stores.hdf5",
    "zarr": "thesislib.stores.zarr",
    "lmdb": "thesislib.stores.lmdb",
    "parquet": "thesislib.stores.parquet",
    "tfrecord": "thesislib.stores.tfrecord",
    "webdataset": "thesislib.stores.webdataset",
}


def format_of(kind: str):
    """The format module of manifest kind ``kind`` (see :mod:`thesislib.stores.base`)."""
    return importlib.import_module(FORMATS[choose("store kind", kind, FORMATS)])


STORES = {spec.name: spec for kind in FORMATS for spec in format_of(kind).STORES}

LOSSLESS = [name for name, spec in STORES.items() if spec.lossless]


def decodes_of(spec: StoreSpec) -> tuple:
    """How the store ``spec`` may be decoded (:data:`thesislib.kernels.jpeg.DECODES`): ``("exact", "fast")``
    for a store of JPEGs whose format offers the approximate decode (its module's ``DECODES``), else
    ``("exact",)`` (a lossless codec or raw pixels: nothing to approximate)."""
    offered = getattr(format_of(spec.kind), "DECODES", ("exact",))
    return tuple(offered) if spec.codec == "jpeg" else ("exact",)


def check_decode(spec: StoreSpec, decode: str) -> str:
    """``decode`` if the store ``spec`` offers it (:func:`decodes_of`); else a ThesisError naming the store
    and the fix (an unknown mode: the choices)."""
    from thesislib.kernels.jpeg import DECODES

    if choose("decode", decode, DECODES) not in decodes_of(spec):
        raise ThesisError(f"decode={decode!r} applies to the stores of JPEGs read by the files or tfrecord "
                          f"loaders (files-jpeg, tfrecord), not to {spec.name} ({spec.kind}): leave decode as "
                          "'exact'")
    return decode


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


def read_back(store_dir, split: str) -> tuple:
    """(images, labels) of ``split`` read by the store's own ecosystem's tool (no thesislib code), the
    store's format found by the name of its folder."""
    return format_of(get_store_spec(Path(store_dir).name).kind).read_back(Path(store_dir), split)


@dataclass(frozen=True)
class Store:
    """A finished store: its folder and its (verified) manifest. Read-only and picklable."""
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
    def format(self):
        """The format module that writes and reads this store (chosen by the manifest's kind)."""
        return format_of(self.kind)

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

    def reader(self, split: str, decode: str = "exact"):
        """A :class:`~thesislib.stores.base.Reader` of ``split`` (not yet open). ``decode``: how JPEGs are
        decoded (:data:`thesislib.kernels.jpeg.DECODES`; ``"fast"`` is approximate), checked by
        :func:`check_decode` (a ThesisError for a store that holds no JPEG or whose format cannot)."""
        split = choose("split", split, self.manifest["splits"])
        if check_decode(self.spec, decode) == "exact" and not hasattr(self.format, "DECODES"):
            return self.format.reader(self, split)
        return self.format.reader(self, split, decode=decode)

    def data_files(self) -> list:
        """The store's data files (what ``verify`` hashes and ``bench --cold`` evicts)."""
        return self.format.data_files(self.path)

    def _split(self, split: str) -> dict:
        return self.manifest["splits"][choose("split", split, self.manifest["splits"])]


def open_store(data_dir, dataset: str, store: str, hint: str = None, verified: bool = False) -> Store:
    """The finished store ``store`` of ``dataset``; a ThesisError naming the ``prepare`` to run if missing
    (``hint``: that command, when the caller knows more of it than the dataset, store and folder).
    ``verified``: the folder was just written and hashed file by file (a fresh ``bench --cache`` copy), so
    its scan for special files is not repeated; the manifest is read and checked all the same."""
    from thesislib.datasets import get_dataset
    from thesislib.stores.integrity import check_manifest_schema, check_regular_files
    from thesislib.stores.manifest import read_manifest

    get_dataset(dataset)
    spec = get_store_spec(store)
    path = store_path(data_dir, dataset, store)
    if not remote.exists(remote.join(path, "manifest.json")):
        state = "is incomplete (no manifest.json)" if remote.exists(path) else "is not prepared"
        raise ThesisError(f"store {store} of {dataset} at {path} {state}: run "
                          f"`{hint or prepare_command(dataset, store, data_dir)}`")
    manifest = check_manifest_schema(remote.join(path, "manifest.json"),
                                     read_manifest(path, dataset=dataset, store=store))
    if not (remote.is_url(path) or verified):  # a server holds only regular files (a URL names no FIFO)
        check_regular_files(path)
    if manifest.get("kind", spec.kind) != spec.kind:
        command = hint or prepare_command(dataset, store, data_dir)
        raise ThesisError(f"{remote.join(path, 'manifest.json')} says kind={manifest.get('kind')!r}, store "
                          f"{store} is a {spec.kind} store: run `{command} --force`")
    return Store(path, spec, manifest)


def verify_store(store: Store, progress: bool = True) -> int:
    """Check every data file of ``store`` against the SHA-256 in its manifest; returns the bytes checked.

    A ThesisError names the first missing or changed file and the fix (prepare the store again)."""
    from tqdm import tqdm

    fix = f"run `{prepare_command(store.dataset, store.name, store.path.parent.parent)} --force`"
    expected = store.manifest.get("files_sha256")
    if not expected:
        raise ThesisError(f"{store.path / 'manifest.json'} has no per-file checksums (the store was prepared "
                          f"by an older thesislib): {fix}")
    missing = sorted(set(str(p.relative_to(store.path)) for p in store.data_files()) - set(expected))
    if missing:
        raise ThesisError(f"{store.path / missing[0]} is not listed in the manifest's checksums: {fix}")
    paths = [store.path / name for name in sorted(expected)]
    absent = [path for path in paths if not path.is_file()]
    if absent:
        raise ThesisError(f"{absent[0]} is missing: {fix}")
    total = sum(path.stat().st_size for path in paths)
    with tqdm(total=total, desc=f"verify {store.dataset}/{store.name}", unit="B", unit_scale=True,
              disable=not progress) as bar:
        for path, name in zip(paths, sorted(expected)):
            if file_sha256(path, bar) != expected[name]:
                raise ThesisError(f"{path} does not match its SHA-256 in the manifest (corrupt or changed): "
                                  f"{fix}")
    return total
