"""What every loader is: a :class:`Loader` over one split of one store, iterated once per epoch.

A loader yields ``(images, labels)``: ``images`` a (B, H, W, 3) NHWC tensor in the store's dtype (uint8, or
float16/float32 for float stores), on the CPU or already on ``device``; ``labels`` int64 (B,). The training
loop turns the pixels into float NCHW on the device. Batches come from :func:`~thesislib.loaders.sampler.
epoch_batches`, so for a seed every loader (``dali`` excepted) delivers the same samples in the same order.

Parameters common to every loader (documented once, as FFCV does):

* ``store``: a finished :class:`~thesislib.stores.Store` whose ``kind`` is in the loader's ``store_kinds``;
* ``split``: ``"train"`` or ``"val"``;
* ``batch_size``: samples per batch (>= 1); the last batch of an epoch may be short;
* ``num_workers``: readers working in parallel (0: the main process reads): threads or worker processes,
  chosen per reader (see below);
* ``pin_memory``: return page-locked CPU tensors (faster, asynchronous copies to a GPU; ignored without one);
* ``seed``: the sampler's seed; with ``set_epoch`` it fixes the order of every epoch;
* ``shuffle``: False visits the samples in index order (validation);
* ``device``: where the batches are delivered (``"cpu"`` for the CPU loaders; GPU loaders take ``"cuda"``).

The batch loader (:class:`FormatLoader`, one per format with a reader) reads a whole batch in one call of
the format's reader. What ``num_workers`` means depends on the reader:

* readers whose work releases the GIL and that write into a given buffer
  (:meth:`~thesislib.stores.base.Reader.reads_in_threads`: ``numpy``'s gather, ``hdf5`` and ``zarr``
  through their memory maps, the image decoders of ``files``, ``tfrecord`` and ``parquet``, ``lmdb``'s
  read-only transactions, on local stores): the loader's
  :class:`~thesislib.kernels.prefetch.Prefetcher` reads every batch into its ring, in this process, with
  *at most* ``num_workers`` background threads ahead of the training loop, sharing the reader's open
  files. How many it uses (none, one, ``num_workers``) it measures over the first batches, the training
  loop's own time included: threads pay only when they overlap the loop's work; with nothing to overlap,
  handing each batch between threads costs more than reading it where it is used. Why threads and not
  worker processes: those are started anew every epoch and pass each batch through shared memory, a cost
  several times the read itself for the fast formats. ``python benchmarks/peers.py`` prints these rows
  side by side (0 and 2 workers, and the ``pytorch`` rows whose workers are processes). Independently of
  ``num_workers``, a reader may split *one batch* over the machine's cores where that measured faster (the
  gather's copy, :class:`~thesislib.kernels.gather.Gather`; the image decoders in the reading thread,
  :func:`thesislib.kernels.jpeg.batch_threads`), as DALI's ``num_threads`` does: with 0 workers such a
  loader can still use both cores of a 2-core machine (its ``cpu_util_pct`` shows it);
* every other reader (h5py without a memory map, stores at a URL, ...), and any loader asked
  for ``pin_memory`` on a GPU machine: PyTorch worker *processes* through :class:`ReaderDataset` and a
  ``DataLoader`` (``batch_size=None``, the batch list as ``sampler``), so ``num_workers`` and
  ``pin_memory`` mean what they mean in PyTorch. Files are opened lazily in each worker: an HDF5 handle
  opened before a fork breaks reads. With ``num_workers=0`` and no pinning the batches are read in a plain
  loop (same batches, less overhead).

Threads or processes, the batches and their order are the same.

A batch read into the ring (first kind) lives in a reused buffer
(:class:`~thesislib.stores.gather.BatchRing`, one per loader, ``BATCHES_AHEAD + 2`` slots) with a stated
lifetime (no reference counting): it stays valid while the next batch is drawn from the same loader. The
training loop consumes each batch before it draws the next; copy a batch (``clone()``) to keep it longer.
"""

import abc

import torch

from thesislib.datasets import SPLITS, check_seed
from thesislib.distributed import rank_and_world
from thesislib.errors import ThesisError, choose
from thesislib.loaders.sampler import batch_count, check_batch_size, check_whole, epoch_batches
from thesislib.kernels.prefetch import BATCHES_AHEAD, Layout, Prefetcher


class Loader(abc.ABC):
    """One split of one store, delivered as batches; see the module docstring for the parameters."""

    name = ""              # the --loader name
    store_kinds = ()       # store kinds it reads (manifest kinds: keys of thesislib.stores.FORMATS)
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
        return batch_count(self.num_samples, self.batch_size, world_size=rank_and_world()[1])

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose (seeded) batch order the next iteration delivers."""
        self.epoch = int(epoch)

    def batches(self) -> list:
        """This epoch's batches of sorted sample indices (on this rank, under torchrun)."""
        rank, world = rank_and_world()  # torchrun: this rank's share of the epoch (see the sampler)
        return epoch_batches(self.num_samples, self.batch_size, self.seed, self.epoch, self.shuffle,
                             rank=rank, world_size=world)

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


class FormatLoader(Loader):
    """The one batch loader over a format's reader (:meth:`Store.reader`): each batch is one
    ``reader.read(indices)``. Registered once per format, under the format's ``LOADER`` name, by
    :func:`thesislib.loaders.format_loader_class` (which sets ``name``, ``store_kinds``, ``default_store``).

    ``decode``: how a store of JPEGs is decoded (``files`` on ``files-jpeg``, ``tfrecord``): ``"exact"``
    (Pillow's pixels, the default) or ``"fast"`` (FFCV's fast DCT, approximate:
    :data:`thesislib.kernels.jpeg.DECODES`); a ThesisError for a store that decodes no JPEG."""

    def __init__(self, store, split, decode: str = "exact", **kwargs):
        self.reads_urls = getattr(store.format, "READS_URLS", False)  # the format says
        super().__init__(store, split, **kwargs)
        self.decode = decode
        self.dataset = ReaderDataset(self.make_reader())
        self.dataset.check()
        self.prefetcher = None  # made when a first epoch is read into the ring (see prefetched)

    def make_reader(self):
        """The reader of this loader's split (the store's format's reader)."""
        return self.store.reader(self.split, decode=self.decode)

    @classmethod
    def unavailable_reason(cls):
        from thesislib.stores import format_of

        check = getattr(format_of(cls.store_kinds[0]), "unavailable_reason", None)
        return check() if check is not None else None

    def __iter__(self):
        if self.reads_in_threads():
            yield from self.prefetched()
            return
        yield from iterate(batch_dataloader(self.dataset, self.batches(), self.num_workers, self.pin_memory))

    def reads_in_threads(self) -> bool:
        """True: this epoch's batches are read into the loader's ring by its prefetcher (no pinning asked on
        a GPU machine, and the reader's work releases the GIL; see the module docstring)."""
        if self.pin_memory and torch.cuda.is_available():
            return False
        self.dataset.reader.opened()  # here, before threads share it
        return self.dataset.reader.reads_in_threads()

    def prefetched(self):
        """This epoch's batches read into the ring by the loader's one
        :class:`~thesislib.kernels.prefetch.Prefetcher` (kept across epochs, with its ring and its measured
        thread count)."""
        reader = self.dataset.reader
        if self.prefetcher is None:
            self.prefetcher = Prefetcher(self.num_workers, BATCHES_AHEAD, Layout(reader.shape[1:], reader.dtype))
        return self.prefetcher(reader, self.batches())

    def close(self) -> None:
        self.dataset.close()


def check_num_workers(num_workers) -> int:
    return check_whole("num_workers", num_workers, 0)


def check_reads_url(loader, store) -> None:
    """A ThesisError if ``store`` lies at a URL and ``loader`` cannot read it there (a memory map or a
    database needs a local file): the fix is ``--cache``, a verified local copy."""
    from thesislib import remote

    if remote.is_url(store.path) and not loader.reads_urls:
        raise ThesisError(f"the {loader.name} loader cannot read {store.path} at a URL (it reads local files "
                          "only): add --cache DIR to read a verified local copy")


def check_store_kind(loader, store):
    """``store`` if ``loader`` reads its kind; else a ThesisError naming the stores it can read."""
    if store.kind not in loader.store_kinds:
        from thesislib.stores import STORES

        fitting = [name for name, spec in STORES.items() if spec.kind in loader.store_kinds]
        raise ThesisError(f"loader {loader.name!r} cannot read store {store.name!r} (a {store.kind} store): "
                          f"choose --store from {', '.join(fitting)}")
    return store


class ReaderDataset(torch.utils.data.Dataset):
    """A map-style dataset whose item is a whole batch: ``dataset[indices] -> (images, labels)`` tensors,
    read by a format's :class:`~thesislib.stores.base.Reader` (opened lazily in the process that reads:
    each DataLoader worker unpickles its own reader and opens its own files)."""

    def __init__(self, reader):
        self.reader = reader

    def check(self) -> None:
        self.reader.check()

    def __getitem__(self, indices):
        images, labels = self.reader.read(indices)
        return torch.as_tensor(images), torch.as_tensor(labels)  # arrays are wrapped, not copied

    def close(self) -> None:
        self.reader.close()


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
