"""What every loader is: a :class:`Loader` over one split of one store, iterated once per epoch.

A loader yields ``(images, labels)``: ``images`` a (B, H, W, 3) NHWC tensor in the store's dtype (uint8, or
float16/float32 for float stores), on the CPU or already on ``device``; ``labels`` int64 (B,). The training
loop turns the pixels into float NCHW on the device. Batches come from :func:`~thesislib.loaders.sampler.
epoch_batches`, so for a seed every loader (``dali`` excepted) delivers the same samples in the same order.

Parameters common to every loader (documented once, as FFCV does):

* ``store``: a finished :class:`~thesislib.stores.Store` whose ``kind`` is in the loader's ``store_kinds``;
* ``split``: ``"train"`` or ``"val"``;
* ``batch_size``: samples per batch (>= 1); the last batch of an epoch may be short;
* ``num_workers``: worker processes reading batches in parallel (0: the main process reads);
* ``pin_memory``: return page-locked CPU tensors (faster, asynchronous copies to a GPU; ignored without one);
* ``seed``: the sampler's seed; with ``set_epoch`` it fixes the order of every epoch;
* ``shuffle``: False visits the samples in index order (validation);
* ``device``: where the batches are delivered (``"cpu"`` for the CPU loaders; GPU loaders take ``"cuda"``).

The array loaders read a whole batch in one call through :class:`BatchDataset` and PyTorch's ``DataLoader``
(``batch_size=None``, the batch list as ``sampler``), so ``num_workers`` and ``pin_memory`` mean what they
mean in PyTorch (with neither, the batches are read in a plain loop: same batches, less overhead). Files
are opened lazily in each worker: an HDF5 handle opened before a fork breaks reads.
"""

import abc
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from thesislib.datasets import SPLITS
from thesislib.errors import ThesisError, choose
from thesislib.loaders.sampler import batch_count, check_batch_size, check_seed, check_whole, epoch_batches


class Loader(abc.ABC):
    """One split of one store, delivered as batches; see the module docstring for the parameters."""

    name = ""              # the --loader name
    store_kinds = ()       # store kinds it reads: "files", "npy", "hdf5", "zarr"
    default_store = ""     # the store it reads when --store is not given
    needs_gpu = False      # True: refuses to start without a CUDA GPU
    reads_urls = False     # True: reads a store at a URL directly (see thesislib.remote)

    def __init__(self, store, split, *, batch_size, num_workers=0, pin_memory=False, seed=0, shuffle=True,
                 device="cpu"):
        self.store = check_store_kind(self, store)
        check_reads_url(self, store)
        self.split = choose("split", split, SPLITS)
        self.batch_size = check_batch_size(batch_size)
        self.num_workers = check_num_workers(num_workers)
        self.pin_memory = bool(pin_memory)
        self.seed = check_seed(seed)
        self.shuffle = bool(shuffle)
        self.device = torch.device(device)
        self.epoch = 0
        reason = self.unavailable_reason()
        if reason:
            raise ThesisError(f"the {self.name} loader {reason}")

    @classmethod
    def unavailable_reason(cls):
        """None if the loader can run on this machine, else why not (shown by ``env``)."""
        return None

    @property
    def num_samples(self) -> int:
        return self.store.count(self.split)

    def __len__(self) -> int:
        """Batches per epoch."""
        return batch_count(self.num_samples, self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose (seeded) batch order the next iteration delivers."""
        self.epoch = int(epoch)

    def batches(self) -> list:
        """This epoch's batches of sorted sample indices."""
        return epoch_batches(self.num_samples, self.batch_size, self.seed, self.epoch, self.shuffle)

    @abc.abstractmethod
    def __iter__(self):
        """Yield ``(images, labels)`` for every batch of the current epoch."""

    def close(self) -> None:
        """Release open files and memory maps (the page cache can then be dropped); iterating reopens them."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(store={self.store.name!r}, split={self.split!r}, "
                f"batch_size={self.batch_size}, num_workers={self.num_workers}, seed={self.seed})")


class BatchLoader(Loader):
    """A loader whose ``dataset`` (a :class:`BatchDataset`) reads each batch in one call."""

    batches_class = None  # the subclass's BatchDataset

    def __init__(self, store, split, **kwargs):
        super().__init__(store, split, **kwargs)
        self.dataset = self.batches_class(store, split)
        self.dataset.check()

    def __iter__(self):
        yield from iterate(batch_dataloader(self.dataset, self.batches(), self.num_workers, self.pin_memory))

    def close(self) -> None:
        self.dataset.close()


def check_num_workers(num_workers) -> int:
    return check_whole("num_workers", num_workers, 0)


def check_store_kind(loader, store):
    """``store`` if ``loader`` reads its kind; else a ThesisError naming the stores it can read."""
    if store.kind not in loader.store_kinds:
        from thesislib.stores import STORES

        fitting = [name for name, spec in STORES.items() if spec.kind in loader.store_kinds]
        raise ThesisError(f"loader {loader.name!r} cannot read store {store.name!r} (a {store.kind} store): "
                          f"choose --store from {', '.join(fitting)}")
    return store


def check_reads_url(loader, store) -> None:
    """A ThesisError if ``store`` lies at a URL and ``loader`` cannot read it there (a memory map needs a
    local file): the fix is ``--cache``, a verified local copy."""
    from thesislib import remote

    if remote.is_url(store.path) and not loader.reads_urls:
        raise ThesisError(f"the {loader.name} loader cannot read {store.path} at a URL (it needs local files): "
                          "add --cache DIR to read a verified local copy, or use the files, hdf5 or zarr loader")


def check_split(path, split: str, images_shape, labels_count: int, shape=None) -> None:
    """A ThesisError if a split's images do not have the manifest's ``shape`` or its labels are not one per
    image (array stores: ``path`` the file or folder that holds the split)."""
    shape = tuple(images_shape) if shape is None else tuple(shape)
    if tuple(images_shape) != shape:
        raise ThesisError(f"{path} {split}/images has shape {tuple(images_shape)}, its manifest says {shape}: "
                          "delete its store folder and run prepare again")
    if labels_count != shape[0]:
        raise ThesisError(f"{path} {split}/labels holds {labels_count} labels for {shape[0]} images: delete "
                          "its store folder and run prepare again")


class BatchDataset(torch.utils.data.Dataset):
    """A map-style dataset whose item is a whole batch: ``dataset[indices] -> (images, labels)``.

    Subclasses implement :meth:`open` (called lazily, in the process that reads: each worker opens its
    own handle) and :meth:`read` (one read of the sorted ``indices``). :meth:`close` drops the handle
    (and calls its ``close()`` if it has one).
    """

    def __init__(self):
        self.handle = None

    def open(self):
        raise NotImplementedError

    def read(self, handle, indices):
        """(images (B, H, W, 3), labels (B,)) of the sorted ``indices``, as arrays or tensors."""
        raise NotImplementedError

    def check(self) -> None:
        """Open and close once, so a missing or damaged file is named when the loader is made (the process
        that reads reopens it lazily)."""
        self.handle = self.open()
        self.close()

    def __getitem__(self, indices):
        if self.handle is None:
            self.handle = self.open()
        images, labels = self.read(self.handle, indices)
        return torch.as_tensor(images), torch.as_tensor(labels)  # arrays are wrapped, not copied

    def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None and hasattr(handle, "close"):
            handle.close()

    def __getstate__(self):
        return {**self.__dict__, "handle": None}  # no open handle to a worker


def batch_dataloader(dataset, batches, num_workers=0, pin_memory=False):
    """``dataset[batch]`` for each index array of ``batches``: PyTorch's DataLoader over whole batches
    when ``num_workers`` > 0 or pinning; with neither, a plain loop (the DataLoader would add only its
    per-batch bookkeeping, about 10% of a batch's time in the fastest loaders)."""
    pin = pin_memory and torch.cuda.is_available()
    if num_workers == 0 and not pin:
        return (dataset[batch] for batch in batches)
    dataset.close()  # no handle of this process may reach a forked worker (HDF5's would corrupt reads)
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=batches, num_workers=num_workers, pin_memory=pin,
        persistent_workers=False, prefetch_factor=2 if num_workers else None)


def iterate(dataloader):
    """Iterate a DataLoader; a ThesisError raised in a worker comes back as the same one-line ThesisError,
    and the workers are shut down at once (not when the failed iterator is garbage-collected)."""
    iterator = iter(dataloader)
    try:
        yield from iterator
    except ThesisError as exc:
        if not str(exc).startswith("Caught "):
            raise
        raise ThesisError(worker_message(str(exc))) from None
    finally:
        if hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()


def worker_message(text: str) -> str:
    """The original message inside PyTorch's 'Caught ThesisError in DataLoader worker ...' text."""
    last = text.rstrip().splitlines()[-1]
    return last.split("ThesisError: ", 1)[-1]



GATHER_MIN_BYTES = 256 * 1024   # a gather thread gets at least this many bytes to copy
_POOL = {"pid": None, "pool": None, "size": 0}


def gather_pool(size: int) -> ThreadPoolExecutor:
    """This process's gather threads, at least ``size`` of them (made again after a fork: threads do not
    survive one); a smaller pool of this process is shut down when a larger one replaces it."""
    if _POOL["pid"] != os.getpid() or _POOL["size"] < size:
        if _POOL["pid"] == os.getpid():
            _POOL["pool"].shutdown(wait=False)  # lets the work already given to it finish
        _POOL.update(pid=os.getpid(), pool=ThreadPoolExecutor(size, thread_name_prefix="gather"), size=size)
    return _POOL["pool"]


class BufferPool:
    """Batch buffers used again once nothing refers to them any more, so that a new batch does not land
    in freshly mapped memory (a page fault per 4 KB: about 15% of the time of the fastest gathers).

    A buffer is handed out again only when the pool holds the sole reference to it: while any tensor or
    view made from a batch lives, its memory is never rewritten.
    """

    def __init__(self, keep: int = 4):
        self.keep, self.buffers = keep, []

    def empty(self, shape: tuple, dtype) -> np.ndarray:
        for buffer in self.buffers:
            if buffer.shape == shape and buffer.dtype == dtype and sys.getrefcount(buffer) == 3:
                return buffer  # referenced only by self.buffers, the loop variable and the call's argument
        buffer = np.empty(shape, dtype=dtype)
        self.buffers = [*self.buffers, buffer][-self.keep:]
        return buffer


def gather(array, indices: np.ndarray, pool: BufferPool = None) -> np.ndarray:
    """``array[indices]`` along the first axis, copied by up to ``torch.get_num_threads()`` threads into a
    buffer of ``pool`` (or a new array).

    ``np.take`` copies one row with one memcpy and releases the GIL, so the parts of a batch are copied in
    parallel. Threads that find no free core simply wait, unlike OpenMP's, which spin: a busy machine makes
    the gather no slower than one thread. In DataLoader workers PyTorch sets one thread: one copy each.
    """
    row_bytes = int(np.prod(array.shape[1:])) * array.dtype.itemsize
    threads = max(1, min(torch.get_num_threads(), len(indices) * row_bytes // GATHER_MIN_BYTES))
    shape = (len(indices), *array.shape[1:])
    out = pool.empty(shape, array.dtype) if pool is not None else np.empty(shape, dtype=array.dtype)
    bounds = np.linspace(0, len(indices), threads + 1).astype(int).tolist()
    parts = list(zip(bounds[:-1], bounds[1:]))
    # mode="clip" writes straight into ``out`` ("raise" would buffer it); the sampler's indices are valid
    futures = [gather_pool(threads - 1).submit(np.take, array, indices[a:b], 0, out[a:b], "clip")
               for a, b in parts[1:]]
    np.take(array, indices[:bounds[1]], 0, out[:bounds[1]], "clip")
    for future in futures:
        future.result()
    return out
