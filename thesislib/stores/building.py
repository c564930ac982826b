"""Where a store is built: one ``prepare`` at a time per store, private temporary names, stale leftovers
removed, and enough free space checked before the first byte is written.

* :func:`store_lock`: ``fcntl.flock`` on ``DATA_DIR/<dataset>/.<store>.lock`` (the kernel drops the lock
  when its process dies, so a killed ``prepare`` never leaves it held). A second ``prepare`` of the same
  store says in one line that it waits, then waits. The holder deletes the lock file before it lets go;
  a waiter that then holds a deleted file locks the new one instead, so two processes never hold "the"
  lock on two different files, and a finished ``prepare`` leaves no lock file behind.
* :func:`remove_stale`: ``.<store>.tmp-<PID>`` (an interrupted build) and ``.<store>.old-<PID>`` (an
  interrupted ``--force`` swap) whose process is gone are removed; a live process's folders are not.
* :func:`check_free_space`: a lower estimate of the store's size (source pixels times what its kind keeps
  of them, whole file-system blocks for one-file-per-sample stores) against the free bytes of the folder.
"""

import fcntl
import os
import shutil
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from thesislib.errors import ThesisError

# bytes on disk per source pixel byte, at least (lossy and compressing codecs keep less of them)
KEPT_SHARE = {"hdf5": 1.0, "lmdb": 1.0, "zarr": 0.05, "parquet": 0.05}
CODEC_SHARE = {"bmp": 1.0, "png": 0.05, "tiff": 0.05, "jp2": 0.05, "jpeg": 0.02, "webp": 0.01}
ONE_FILE_PER_SAMPLE = ("files", "zarr")
BLOCK = 4096


def lock_path(final: Path) -> Path:
    return final.parent / f".{final.name}.lock"


@contextmanager
def store_lock(final: Path):
    """Hold the store's build lock (waiting, after one line on stderr, while another process holds it)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    file = acquire(lock_path(final), f"{final}: another prepare is building this store; waiting for it to "
                                     f"finish (lock {lock_path(final)})")
    try:
        yield
    finally:
        with suppress(FileNotFoundError):  # deleted while held: a waiter then finds its file gone, retries
            os.unlink(lock_path(final))
        file.close()


def acquire(path: Path, waiting: str):
    """The open lock file ``path``, locked by ``flock``; ``waiting`` is printed once if it must wait. A lock
    taken on a file that its holder unlinked meanwhile is dropped and taken again on the new file."""
    said = False
    while True:
        file = open(path, "a")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not said:
                print(waiting, file=sys.stderr, flush=True)
                said = True
            fcntl.flock(file, fcntl.LOCK_EX)
        if same_file(path, file):
            return file
        file.close()


def same_file(path: Path, file) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_pid(path: Path, name: str):
    """The PID of a ``.<name>.tmp-<PID>`` or ``.<name>.old-<PID>`` folder's name; None for any other name."""
    for tag in ("tmp", "old"):
        prefix = f".{name}.{tag}-"
        if path.name.startswith(prefix) and path.name[len(prefix):].isdigit():
            return int(path.name[len(prefix):])
    return None


def remove_stale(final: Path) -> list:
    """Remove the temporary and moved-aside folders of store ``final`` left by processes that are gone;
    return what was removed."""
    removed = []
    for path in sorted(final.parent.glob(f".{final.name}.*-*")):
        pid = leftover_pid(path, final.name)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def estimated_bytes(spec, splits: dict) -> int:
    """A lower estimate of the bytes store ``spec`` takes for ``splits`` ({split: (images, labels)})."""
    total = 0
    for images, labels in splits.values():
        sample = int(np.prod(images.shape[1:]))
        if spec.kind == "npy":
            sample *= np.dtype(spec.dtype).itemsize
        else:
            sample = int(sample * (CODEC_SHARE.get(spec.codec, 0.01) if spec.kind == "files"
                                   else KEPT_SHARE.get(spec.kind, 0.01)))
        if spec.kind in ONE_FILE_PER_SAMPLE:
            sample = max(1, -(-sample // BLOCK)) * BLOCK
        total += len(labels) * (sample + 8)
    return total


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """A ThesisError if the file system of ``folder`` has fewer than ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ThesisError(f"{what} needs about {needed / 2**20:.1f} MiB but {folder} has {free / 2**20:.1f} MiB "
                          "free: free space there or choose another --data-dir (nothing was written)")
