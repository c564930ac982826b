"""``memory``: "load everything if it fits": the whole split read into RAM (or VRAM on a GPU) up front.

Reads an npy store. Before reading it checks that the split fits with a margin (:data:`RAM_SHARE` of the
available RAM, the host's or the memory cgroup's limit minus its usage, whichever is smaller;
:data:`VRAM_SHARE` of the free GPU memory) and refuses with a ThesisError otherwise. Batches
are then gathered from the resident tensor on its device; ``num_workers`` is not used (nothing to read).
On the CPU a batch is the ``numpy`` loader's gather (:class:`~thesislib.kernels.gather.Gather`, its thread
count measured per batch size) into one ring of batch buffers (a batch stays valid while the next is
drawn, as the ``numpy`` loader's); ``pin_memory`` (with a CUDA GPU present) copies each batch into
page-locked memory, as PyTorch's DataLoader does. ``close()`` frees the split; the next iteration reads it again (inside that
epoch: so ``bench --cold`` charges every epoch the read of the split from the disk).
"""

import numpy as np
import psutil
import torch

from thesislib.errors import ThesisError
from thesislib.kernels.gather import Gather
from thesislib.kernels.prefetch import BATCHES_AHEAD
from thesislib.loaders.base import Loader
from thesislib.stores.gather import BatchRing

RAM_SHARE = 0.8    # of the RAM available now
VRAM_SHARE = 0.9   # of the GPU memory free now
SLICE = 4096       # images copied at a time


def split_bytes(store, split) -> int:
    """Bytes of a split's images and labels in memory."""
    shape = store.shape(split)
    return int(np.prod(shape)) * np.dtype(store.dtype).itemsize + shape[0] * 8


CGROUP = "/sys/fs/cgroup"
CGROUP_FILES = (("memory.max", "memory.current", "memory.stat", "inactive_file"),  # cgroup v2
                ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
                 "total_inactive_file"))                                           # cgroup v1


def read_number(path):
    """The integer in a cgroup file; None if the file is absent, unreadable or says ``max`` (no limit)."""
    try:
        text = open(path).read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def stat_value(path, key: str) -> int:
    """``key``'s number in a cgroup's ``memory.stat`` (0 if absent)."""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return 0
    return next((int(value) for name, _, value in (line.partition(" ") for line in lines)
                 if name == key and value.isdigit()), 0)


def cgroup_available(root=CGROUP):
    """Bytes this process's memory cgroup still allows: its limit minus its usage (without the inactive
    page cache, which the kernel reclaims before it kills); None without a limit.

    A container's limit is not the host's free memory: psutil sees the host, the kernel kills the process
    at the cgroup's limit. v2 (``memory.max``) is read first, then v1 (``memory.limit_in_bytes``; a v1
    cgroup without a limit reports a huge number, which the host's free memory then undercuts)."""
    for limit_file, usage_file, stat_file, inactive_key in CGROUP_FILES:
        limit = read_number(f"{root}/{limit_file}")
        if limit is not None:
            usage = (read_number(f"{root}/{usage_file}") or 0) - stat_value(f"{root}/{stat_file}", inactive_key)
            return max(0, limit - max(0, usage))
    return None


def available_ram(cgroup_root=CGROUP) -> int:
    """Bytes of RAM available now: the smaller of the host's (psutil) and the memory cgroup's."""
    host, container = psutil.virtual_memory().available, cgroup_available(cgroup_root)
    return host if container is None else min(host, container)


def free_bytes(device) -> int:
    """Bytes that may be used on ``device`` (a share of what is available there now)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] * VRAM_SHARE)
    return int(available_ram() * RAM_SHARE)


def check_fits(store, split, device) -> int:
    """The split's size in bytes; a ThesisError if it does not fit on ``device``."""
    needed, free = split_bytes(store, split), free_bytes(device)
    if needed > free:
        where = "GPU memory" if device.type == "cuda" else "RAM"
        raise ThesisError(f"loader 'memory' needs {needed / 2**20:.0f} MiB to hold {split} of "
                          f"{store.dataset}/{store.name} but only {free / 2**20:.0f} MiB of {where} may be "
                          "used: choose the 'numpy' loader (memory-mapped) or a smaller --scale")
    return needed


def load_split(store, split, device) -> tuple:
    """(images, labels) tensors of a whole split on ``device``, read slice by slice from the store's
    memory-mappable split (the format's ``mapped_split``)."""
    source, labels = store.format.mapped_split(store, split, mmap_mode="c")
    if device.type == "cpu":  # NumPy asks for transparent huge pages for large arrays: a random gather then
        images = torch.from_numpy(np.empty(source.shape, dtype=source.dtype))  # misses the TLB less often
    else:
        images = torch.empty(source.shape, dtype=getattr(torch, store.dtype), device=device)
    for start in range(0, len(source), SLICE):
        images[start:start + SLICE].copy_(torch.from_numpy(source[start:start + SLICE]))
    del source
    return images, torch.from_numpy(labels).to(device)


class MemoryLoader(Loader):
    name = "memory"
    store_kinds = ("npy",)
    default_store = "npy-uint8"

    def __init__(self, store, split, **kwargs):
        super().__init__(store, split, **kwargs)
        self.images = self.labels = None
        self.pin = self.pin_memory and self.device.type == "cpu" and torch.cuda.is_available()
        self.gather, self.ring = Gather(), BatchRing(BATCHES_AHEAD + 2)
        self.load()  # now, so that the set-up, not the first epoch, pays for it

    def load(self) -> None:
        """Read the split into memory unless it is there (a ThesisError if it does not fit)."""
        if self.images is None:
            check_fits(self.store, self.split, self.device)
            self.images, self.labels = load_split(self.store, self.split, self.device)

    def __iter__(self):
        self.load()
        if self.device.type != "cpu":
            for batch in self.batches():
                index = torch.from_numpy(batch).to(self.device)
                yield self.images.index_select(0, index), self.labels.index_select(0, index)
            return
        images, labels = self.images.numpy(), self.labels.numpy()
        for batch in self.batches():
            out = self.ring.take((len(batch), *images.shape[1:]), images.dtype)
            batch_images = torch.from_numpy(self.gather(images, batch, out))
            yield (batch_images.pin_memory() if self.pin else batch_images), torch.from_numpy(labels[batch])

    def close(self) -> None:
        """Free the split (the next iteration reads it again)."""
        self.images = self.labels = None
