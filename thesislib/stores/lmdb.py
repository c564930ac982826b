"""The LMDB store: one LMDB environment per split, ``<split>.lmdb/`` (``data.mdb``; ``lock.mdb`` is LMDB's
reader table, not data).

* key of sample ``i``: ``i`` as 8 bytes, big-endian unsigned (``i.to_bytes(8, "big")``), so that LMDB's
  byte order of keys is the index order and a sorted batch walks the B-tree forward;
* value: the sample's raw pixels, (H, W, 3) uint8 in C order (``image.tobytes()``), no header;
* key ``b"__labels__"``: every label of the split, int64 little-endian (``labels.astype("<i8").tobytes()``);
* key ``b"__meta__"``: JSON ``{"shape": [N, H, W, 3], "dtype": "uint8", "key": "8-byte big-endian index"}``.
  Shape, dtype and labels are also in the store's manifest.

This is the layout of the LMDB datasets of Caffe and of many PyTorch training repositories. LMDB is
read the way its zero-copy design offers: the environment is opened read-only without locking (a finished
store is never written) and without OS read-ahead (a shuffled batch touches scattered pages), lazily in the
process that reads; one read transaction walks the split's keys once and keeps every value's pointer into
the memory map (valid while that transaction is open, which the reader keeps for as long as it is open);
a batch is then one gather of ``memcpy`` calls from the map into the batch buffer, compiled and without the
GIL (:class:`~thesislib.kernels.pointerrows.PointerRows`). The data still comes from LMDB's own pages,
faulted in from ``data.mdb`` as any LMDB read does; what is saved is a B-tree lookup and a Python object
per sample per epoch. Measured on cifar10 here (``benchmarks/peers.py``, 2 cores): one ``Cursor.getmulti``
per batch and a copy, holding the GIL, read ~0.3 M img/s; the gather of pointers 1.33 M img/s at 0 workers,
where ``numpy``'s gather of a memory map read 1.53 M in the same run. Opening costs one walk over the keys
(~0.3 s per 50,000 here) and, in a new process, compiling the copy loop (Numba, ~0.4 s). The walk reads the
pages of the values it returns, in key order, i.e. roughly in file order (measured after evicting the page
cache: one walk left 100% of cifar10's ``data.mdb`` resident, 75% of tinyimagenet's). So on a cold page cache
(``bench --cold`` closes the loader before each epoch, so each epoch opens it again) most of a cold epoch's
reads are that walk's, nearly sequential, and the rest follow the batches' order; the epoch's time includes
both.

``num_workers`` threads, not worker processes, read batches ahead (:meth:`LmdbReader.reads_in_threads`):
the copies release the GIL, and the batch lands in the loader's reused buffer. (Worker processes would also
have to open the environment anew after the fork: LMDB refuses an environment that the parent process holds
open.)
"""

import itertools
import json
import math
from pathlib import Path

import numpy as np

from thesislib.errors import ThesisError
from thesislib.stores.base import Reader, StoreSpec, damaged

KIND = "lmdb"
STORES = [StoreSpec("lmdb", KIND, "uint8")]
LOADER = "lmdb"
LABELS_KEY, META_KEY = b"__labels__", b"__meta__"
TRANSACTION = 1000  # samples written per write transaction
PAGE = 4096


def key(index: int) -> bytes:
    """The key of sample ``index``: 8 bytes, big-endian."""
    return int(index).to_bytes(8, "big")


def environment(store_dir, split: str) -> Path:
    return Path(store_dir) / f"{split}.lmdb"


def unavailable_reason():
    import importlib.util

    return None if importlib.util.find_spec("lmdb") else "needs the lmdb binding: pip install lmdb"


def map_size(images) -> int:
    """Bytes to reserve for a split: every value on its own overflow pages, B-tree and labels, doubled."""
    sample = int(np.prod(images.shape[1:]))
    pages = math.ceil((sample + 64) / PAGE) + 1
    return 2 * len(images) * pages * PAGE + (64 << 20)


def write_split(store_dir: Path, spec, split: str, images, labels, classes=None, progress=None) -> dict:
    import lmdb

    labels = np.asarray(labels, dtype="<i8")
    meta = {"shape": list(images.shape), "dtype": "uint8", "key": "8-byte big-endian index"}
    env = lmdb.open(str(environment(store_dir, split)), map_size=map_size(images), subdir=True,
                    readahead=False, meminit=False)
    try:
        write_samples(env, images, labels, meta, progress)
    except lmdb.Error as exc:  # LMDB reports a full disk as EIO, without the errno: say what it likely is
        raise ThesisError(f"cannot write the LMDB environment {split}.lmdb under {Path(store_dir).parent} "
                          f"({exc}): the disk is probably full or the folder not writable; free space or "
                          "choose another --data-dir (nothing half-written was kept)") from exc
    finally:
        env.close()
    return {}


def write_samples(env, images, labels, meta, progress) -> None:
    """Every sample of a split, in index order (``append``: each key follows the last), then labels and meta."""
    for start in range(0, len(images), TRANSACTION):
        block = np.ascontiguousarray(images[start:start + TRANSACTION], dtype=np.uint8)
        with env.begin(write=True) as txn:
            for offset, image in enumerate(block):
                txn.put(key(start + offset), image.tobytes(), append=True)  # keys arrive in order
        if progress is not None:
            progress.update(len(block))
    with env.begin(write=True) as txn:
        txn.put(LABELS_KEY, labels.tobytes())
        txn.put(META_KEY, json.dumps(meta).encode())
    env.sync(True)


def layout(spec, shape) -> dict:
    return {"environment": "<split>.lmdb/data.mdb (one per split)", "key": "sample index, 8-byte big-endian",
            "value": "raw uint8 pixels (H, W, 3), C order", "labels_key": "__labels__ (int64 little-endian)",
            "meta_key": "__meta__ (JSON: shape, dtype, key)",
            "why": "one lookup per sample in a B-tree whose key order is the index order; values are the "
                   "pixels, so a read is a copy, no decode"}


def data_files(store_dir) -> list:
    return sorted(Path(store_dir).glob("*.lmdb/data.mdb"))


def open_split(folder: Path, count: int):
    """(environment, labels) of a split, checked: readable, not truncated, one label per sample."""
    import lmdb

    data = folder / "data.mdb"
    if not data.is_file():
        raise damaged(data, "is missing")
    try:
        env = lmdb.open(str(folder), readonly=True, lock=False, readahead=False, subdir=True,
                        max_readers=1, max_spare_txns=1)
    except lmdb.Error as exc:
        raise damaged(data, f"is not a readable LMDB environment ({exc})") from exc
    try:
        needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        if data.stat().st_size < needed:  # reading a page past the end would crash the process (SIGBUS)
            raise damaged(data, f"is truncated ({data.stat().st_size} bytes, its pages need {needed})")
        with env.begin() as txn:
            raw = txn.get(LABELS_KEY)
        if raw is None or len(raw) != 8 * count:
            raise damaged(data, f"lacks the labels of its {count} samples (key {LABELS_KEY!r})")
    except BaseException:
        env.close()
        raise
    return env, np.frombuffer(raw, dtype="<i8").astype(np.int64)


class LmdbReader(Reader):
    """Batches of a split copied from LMDB's memory map: the split's values are looked up once per open (one
    walk of the B-tree in key order, which is index order) and kept as pointers into the map, valid while the
    walk's read transaction stays open; a batch is then one gather of those rows
    (:class:`~thesislib.kernels.pointerrows.PointerRows` through :class:`~thesislib.kernels.gather.Gather`).
    A missing value, or one of the wrong size, is named by its sample index when the split is opened."""

    def __init__(self, store, split):
        from thesislib.kernels.gather import Gather

        super().__init__(store, split)
        self.folder = environment(store.path, split)
        self.sample_bytes = int(np.prod(self.shape[1:]))
        self.gather = Gather()

    def open(self):
        import lmdb

        env, labels = open_split(self.folder, self.shape[0])
        try:
            labels = self.checked_labels(self.folder / "data.mdb", labels)
            txn = env.begin(buffers=True)  # kept open by the rows: LMDB's pointers are valid until it ends
            return self.mapped_values(env, txn), labels
        except lmdb.Error as exc:
            env.close()
            raise damaged(self.folder / "data.mdb", f"cannot be read ({exc})") from exc
        except BaseException:
            env.close()
            raise

    def mapped_values(self, env, txn):
        """The split's values as :class:`~thesislib.kernels.pointerrows.PointerRows` owning ``(env, txn)``:
        the first ``N`` entries in key order must be the keys of samples ``0..N-1``, each of one sample's
        size (LMDB's lookups cost ~0.3 s per 100,000 keys here, once per open instead of once per epoch)."""
        from thesislib.kernels.pointerrows import PointerRows

        count = self.shape[0]
        entries = list(itertools.islice(txn.cursor().iternext(), count))
        keys = b"".join(entry[0] for entry in entries)
        sizes = np.fromiter((len(value) for _, value in entries), dtype=np.int64, count=len(entries))
        if keys != np.arange(count, dtype=">u8").tobytes() or (sizes != self.sample_bytes).any():
            raise self.first_bad_value(txn, np.arange(count))
        addresses = np.fromiter((address_of(value) for _, value in entries), dtype=np.uint64, count=count)
        self.check_span(addresses)
        return PointerRows(addresses, self.shape, np.uint8, owner=(env, txn))

    def check_span(self, addresses) -> None:
        """A ThesisError if the values spread over more bytes than ``data.mdb`` holds (damaged page numbers
        would point past the file's end, where a copy would crash the process with SIGBUS)."""
        data = self.folder / "data.mdb"
        span = int(addresses.max() - addresses.min()) + self.sample_bytes if len(addresses) else 0
        if span > data.stat().st_size:
            raise damaged(data, f"places its values over {span} bytes, more than its {data.stat().st_size}")

    def read_from(self, handle, indices, out=None):
        rows, labels = handle
        return self.gather(rows, indices, out), labels[indices]

    def first_bad_value(self, txn, indices):
        """The error naming the first of ``indices`` whose value is missing or of the wrong size."""
        for index in indices.tolist():
            value = txn.get(key(index))
            if value is None or len(value) != self.sample_bytes:
                return self.bad_value(value, index)
        return damaged(self.folder / "data.mdb", "holds keys between its samples' keys that are no sample's")

    def bad_value(self, value, index):
        what = "lacks" if value is None else f"has {len(value)} bytes, not {self.sample_bytes}, for"
        return damaged(self.folder / "data.mdb", f"{what} sample {index} (key {key(index).hex()})")

    def reads_in_threads(self) -> bool:
        return True  # see the module docstring

    def close_handle(self, handle) -> None:
        """Let go of the rows: the transaction and environment close as soon as no thread copies from them
        (the rows own them; closing them here could unmap the map under a copy still running)."""


def address_of(buffer) -> int:
    """The address of a read-only buffer's first byte (NumPy's array interface: no copy)."""
    return np.frombuffer(buffer, dtype=np.uint8).__array_interface__["data"][0]


def reader(store, split: str) -> LmdbReader:
    return LmdbReader(store, split)


def read_back(store_dir, split: str) -> tuple:
    import json

    import lmdb

    with lmdb.open(str(Path(store_dir) / f"{split}.lmdb"), readonly=True, lock=False) as env, \
            env.begin() as txn:
        meta = json.loads(txn.get(b"__meta__"))
        shape = meta["shape"]
        labels = np.frombuffer(txn.get(b"__labels__"), dtype="<i8").astype(np.int64)
        images = np.stack([np.frombuffer(txn.get(i.to_bytes(8, "big")), dtype=meta["dtype"]).reshape(shape[1:])
                           for i in range(shape[0])]) if shape[0] else np.empty(shape, dtype=meta["dtype"])
    return images, labels
