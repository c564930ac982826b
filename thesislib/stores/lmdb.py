"""The LMDB store: one LMDB environment per split, ``<split>.lmdb/`` (``data.mdb``; ``lock.mdb`` is LMDB's
reader table, not data).

* key of sample ``i``: ``i`` as 8 bytes, big-endian unsigned (``i.to_bytes(8, "big")``), so that LMDB's
  byte order of keys is the index order and a sorted batch walks the B-tree forward;
* value: the sample's raw pixels, (H, W, 3) uint8 in C order (``image.tobytes()``), no header;
* key ``b"__labels__"``: every label of the split, int64 little-endian (``labels.astype("<i8").tobytes()``);
* key ``b"__meta__"``: JSON ``{"shape": [N, H, W, 3], "dtype": "uint8", "key": "8-byte big-endian index"}``.
  Shape, dtype and labels are also in the store's manifest.

This is the layout of the LMDB datasets of Caffe and of many PyTorch training repositories. A batch is
one read transaction that looks up its sorted keys in one call (``Cursor.getmulti``: the loop over keys in
C) and copies the values into the batch array; the environment is opened read-only without locking (a
finished store is never written) and without OS read-ahead (a shuffled batch touches scattered pages),
lazily in the process that reads.

``num_workers`` threads, not worker processes, read batches ahead (:meth:`LmdbReader.reads_in_threads`):
a read-only environment opened without locking serves one read transaction per batch from any thread, a
lookup and a copy of a few kilobytes cost less than passing the batch back from a worker process, and the
batch lands in the loader's reused buffer. (Worker processes would also have to open the environment
anew after the fork: LMDB refuses an environment that the parent process holds open.)
"""

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
    """Batches of a split: one read transaction and one ``getmulti`` per batch, the values copied into the
    batch; a missing value or one of the wrong size is named by its sample index."""

    def __init__(self, store, split):
        super().__init__(store, split)
        self.folder = environment(store.path, split)
        self.sample_bytes = int(np.prod(self.shape[1:]))

    def open(self):
        env, labels = open_split(self.folder, self.shape[0])
        try:
            return env, self.checked_labels(self.folder / "data.mdb", labels)
        except BaseException:
            env.close()
            raise

    def read_from(self, handle, indices, out=None):
        import lmdb

        env, labels = handle
        images = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8) if out is None else out
        flat = images.reshape(len(indices), -1)
        keys = np.asarray(indices, dtype=">u8").tobytes()  # every key at once: 8 bytes big-endian each
        try:
            with env.begin(buffers=True) as txn:
                pairs = txn.cursor().getmulti([keys[at:at + 8] for at in range(0, len(keys), 8)])
                values = [value for _, value in pairs]
                if len(values) != len(indices) or set(map(len, values)) - {self.sample_bytes}:
                    raise self.first_bad_value(txn, indices)
                flat[...] = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(flat.shape)
        except lmdb.Error as exc:
            raise damaged(self.folder / "data.mdb", f"cannot be read ({exc})") from exc
        return images, labels[indices]

    def first_bad_value(self, txn, indices):
        """The error naming the first of ``indices`` whose value is missing or of the wrong size."""
        for index in indices.tolist():
            value = txn.get(key(index))
            if value is None or len(value) != self.sample_bytes:
                return self.bad_value(value, index)
        return damaged(self.folder / "data.mdb", "returned fewer values than keys asked for")

    def bad_value(self, value, index):
        what = "lacks" if value is None else f"has {len(value)} bytes, not {self.sample_bytes}, for"
        return damaged(self.folder / "data.mdb", f"{what} sample {index} (key {key(index).hex()})")

    def reads_in_threads(self) -> bool:
        return True  # see the module docstring

    def read_cores(self) -> int:
        return 1  # py-lmdb's lookups hold the GIL: a second thread helps only beside a training step

    def close_handle(self, handle) -> None:
        handle[0].close()


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
