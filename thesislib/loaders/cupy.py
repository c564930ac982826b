"""``cupy``: the ``.npy`` store moved to the GPU without detours, then handed to PyTorch through DLPack
without a copy (thesis section 2.4.3).

Every batch is a CuPy array in GPU memory that ``torch.from_dlpack`` wraps as a CUDA tensor sharing the
same memory; the batches follow the shared sampler, so the pixels and their order equal the ``numpy``
loader's. Three ways to fill them (``source``):

* ``"vram"``: the whole split is read into GPU memory once (with kvikio's ``CuFile.read`` where kvikio is
  installed, else in slices from the memory map), and each batch is gathered on the GPU with
  ``cupy.take``: after the first epoch the disk is out of the loop;
* ``"kvikio"``: each batch's runs of consecutive samples are read with kvikio's ``CuFile.pread`` straight
  into a GPU staging buffer (GPUDirect Storage where the machine has it, else kvikio's compatibility mode,
  POSIX reads through host bounce buffers), then copied into the batch on the GPU;
* ``"pinned"``: the batch is gathered from the memory map into page-locked host memory and copied to the
  GPU asynchronously (``ndarray.set`` on a stream), so the next batch's gather overlaps the copy.
* ``"auto"`` (default): ``"vram"`` if the split takes at most half of the free GPU memory, else
  ``"kvikio"`` where GPUDirect Storage is available, else ``"pinned"``. :attr:`CupyLoader.mode` says
  which one ran.

All GPU work runs on PyTorch's current CUDA stream (wrapped as a CuPy ``ExternalStream``), so a batch's
memory, once PyTorch frees it back to CuPy's pool, is never rewritten while a kernel still reads it. The
two staging buffers are the loader's own; an event per buffer says when its last copy has finished.

``num_workers`` and ``pin_memory`` are accepted for a uniform interface and not used (CuPy reads in the
calling thread; kvikio has its own thread pool; the ``pinned`` source is always page-locked).
"""

import importlib.util
import sys

import numpy as np
import torch

from thesislib import gpu
from thesislib.envinfo import wheel_name
from thesislib.errors import ThesisError, choose
from thesislib.loaders.base import Loader

SOURCES = ("auto", "vram", "kvikio", "pinned")
VRAM_SHARE = 0.5       # "auto" keeps the split in VRAM if it takes at most this share of the free memory
SLICE_BYTES = 64 << 20  # the memory-map fallback of "vram" copies this many bytes at a time


def runs(indices: np.ndarray) -> list:
    """(start, stop) positions of the runs of consecutive values in the sorted ``indices``."""
    cuts = (np.flatnonzero(np.diff(indices) != 1) + 1).tolist()
    bounds = [0, *cuts, len(indices)]
    return list(zip(bounds[:-1], bounds[1:]))


def open_split(store, split) -> tuple:
    """(memory-mapped images, labels in memory) of ``split``, checked against the manifest (the format's
    ``mapped_split``)."""
    return store.format.mapped_split(store, split)


class Staging:
    """Two reusable buffers used in turn; an event per buffer marks when the copy out of it has finished."""

    def __init__(self, make):
        self.buffers = [make(), make()]
        self.events = [None, None]
        self.turn = 0

    def take(self):
        """(slot, buffer): the buffer not used last, once the copy out of it has finished."""
        slot, self.turn = self.turn, 1 - self.turn
        if self.events[slot] is not None:
            self.events[slot].synchronize()
        return slot, self.buffers[slot]

    def copied(self, slot, stream) -> None:
        self.events[slot] = stream.record()


class CupyLoader(Loader):
    """The .npy store read into GPU memory with CuPy; batches reach PyTorch through DLPack (no copy).

    ``device``: the CUDA device (``"cuda"`` or ``"cuda:N"``); ``source``: ``"auto"``, ``"vram"``,
    ``"kvikio"`` or ``"pinned"`` (see the module docstring). The other parameters are
    :class:`~thesislib.loaders.base.Loader`'s.
    """

    name = "cupy"
    store_kinds = ("npy",)
    default_store = "npy-uint8"
    needs_gpu = True

    def __init__(self, store, split, *, batch_size, num_workers=0, pin_memory=False, seed=0, shuffle=True,
                 device="cuda", source="auto"):
        super().__init__(store, split, batch_size=batch_size, num_workers=num_workers,
                         pin_memory=pin_memory, seed=seed, shuffle=shuffle, device=device)
        if self.device.type != "cuda":
            raise ThesisError(f"the cupy loader delivers batches in GPU memory, not on {device!r}: "
                              "use --device cuda (or auto)")
        self.source = choose("cupy source", source, SOURCES)
        if self.source == "kvikio" and importlib.util.find_spec("kvikio") is None:
            raise ThesisError("the cupy loader's kvikio source needs kvikio: "
                              f"pip install {wheel_name('kvikio')}")
        self.index = gpu.torch_device_index(self.device)
        self.device = torch.device("cuda", self.index)
        self.mode = None  # the source chosen at the first iteration
        self._images = self._labels = self._resident = self._file = self._staging = None

    @classmethod
    def unavailable_reason(cls):
        if not torch.cuda.is_available():
            return ("needs a CUDA GPU: none found (torch.cuda.is_available() is False); "
                    "use --loader numpy on this machine")
        if importlib.util.find_spec("cupy") is None:
            return f"needs CuPy: pip install -e '.[gpu]' (or pip install {wheel_name('cupy')})"
        import cupy

        if not cupy.is_available():
            return (f"has CuPy but CuPy cannot use the GPU: check that {wheel_name('cupy')} is installed "
                    "and matches the driver (`python -m thesislib env` lists mismatches)")
        return None

    def __iter__(self):
        import cupy

        with cupy.cuda.Device(self.index):
            self._open()
        for indices in self.batches():
            yield self._read(indices)

    def _read(self, indices: np.ndarray) -> tuple:
        """The batch ``indices`` as (CUDA uint8 images sharing CuPy's memory, CUDA int64 labels)."""
        import cupy

        torch_stream = torch.cuda.current_stream(self.device)
        with cupy.cuda.Device(self.index), cupy.cuda.ExternalStream(torch_stream.cuda_stream) as stream:
            images = self._gather(indices, stream)
            tensor = torch.from_dlpack(images)  # zero copy: the tensor keeps the CuPy memory alive
        positions = torch.from_numpy(indices).to(self.device, non_blocking=True)
        return tensor, self._labels.index_select(0, positions)

    def _gather(self, indices, stream):
        if self.mode == "vram":
            import cupy

            return cupy.take(self._resident, cupy.asarray(indices), axis=0)
        return self._gather_kvikio(indices, stream) if self.mode == "kvikio" else \
            self._gather_pinned(indices, stream)

    def _gather_pinned(self, indices, stream):
        """Gather from the memory map into page-locked memory; copy to the GPU on ``stream``."""
        import cupy

        slot, host = self._staging.take()
        batch = host[:len(indices)]
        np.take(self._images, indices, axis=0, out=batch, mode="clip")  # "clip": no temporary copy
        out = cupy.empty(batch.shape, batch.dtype)
        out.set(batch, stream=stream)
        self._staging.copied(slot, stream)
        return out

    def _gather_kvikio(self, indices, stream):
        """Read each run of consecutive samples with CuFile.pread into GPU staging; copy on ``stream``."""
        slot, staging = self._staging.take()
        futures = [self._file.pread(staging[start:stop], file_offset=self._offset(indices[start]))
                   for start, stop in runs(indices)]
        for future in futures:
            future.get()
        out = staging[:len(indices)].copy()  # a GPU-to-GPU copy, ordered on the current stream
        self._staging.copied(slot, stream)
        return out

    def _offset(self, index) -> int:
        """Byte offset of sample ``index`` in the .npy file (C order: samples are contiguous)."""
        return self._images.offset + int(index) * self._sample_bytes

    @property
    def _sample_bytes(self) -> int:
        return int(np.prod(self._images.shape[1:])) * self._images.dtype.itemsize

    def _open(self) -> None:
        """Map the store, put the labels on the GPU and prepare the chosen source (once)."""
        if self._images is not None:
            return
        self._images, labels = open_split(self.store, self.split)
        self._labels = torch.from_numpy(labels).to(self.device)
        self.mode = self._choose_mode()
        {"vram": self._open_vram, "kvikio": self._open_kvikio, "pinned": self._open_pinned}[self.mode]()

    def _choose_mode(self) -> str:
        import cupy

        if self.source != "auto":
            return self.source
        free, _ = cupy.cuda.runtime.memGetInfo()
        if self._images.nbytes <= VRAM_SHARE * free:
            return "vram"
        return "kvikio" if gpu.gds_status() == "available" else "pinned"

    def _batch_shape(self) -> tuple:
        return (self.batch_size, *self._images.shape[1:])

    def _open_pinned(self) -> None:
        import cupyx

        self._staging = Staging(lambda: cupyx.empty_pinned(self._batch_shape(), self._images.dtype))

    def _open_kvikio(self) -> None:
        import cupy
        import kvikio

        self._file = kvikio.CuFile(self.store.format.images_file(self.store, self.split), "r")
        self._staging = Staging(lambda: cupy.empty(self._batch_shape(), self._images.dtype))

    def _open_vram(self) -> None:
        """Read the whole split into GPU memory: kvikio's CuFile.read if installed, else memory-map slices."""
        import cupy

        torch.cuda.synchronize(self.device)  # pooled memory handed out below is no longer read by anyone
        self._resident = cupy.empty(self._images.shape, self._images.dtype)
        if importlib.util.find_spec("kvikio") is not None:
            import kvikio

            with kvikio.CuFile(self.store.format.images_file(self.store, self.split), "r") as file:
                file.read(self._resident, file_offset=self._images.offset)
            return
        step = max(1, SLICE_BYTES // self._sample_bytes)
        for start in range(0, len(self._images), step):
            self._resident[start:start + step].set(np.ascontiguousarray(self._images[start:start + step]))

    def close(self) -> None:
        """Drop the memory map, the file and the GPU copies; give CuPy's unused blocks back to the driver."""
        if self._file is not None:
            self._file.close()
        self._images = self._labels = self._resident = self._file = self._staging = None
        self.mode = None
        cupy = sys.modules.get("cupy")
        if cupy is not None:
            cupy.get_default_memory_pool().free_all_blocks()
            cupy.get_default_pinned_memory_pool().free_all_blocks()
