"""``dali``: NVIDIA DALI pipelines, read through DALI's PyTorch iterator (thesis section 2.4.4).

Two stores, two pipelines:

* an image-file store (``files-jpeg`` by default; DALI decodes all six codecs): the encoded bytes enter
  through ``fn.external_source`` and ``fn.decoders.image`` decodes them, on the GPU (``device="mixed"``:
  nvJPEG, with the hardware JPEG decoder where the GPU has one) or, without a GPU, on the CPU;
* a ``.npy`` store: either the batch gathered from the memory map enters through ``fn.external_source``
  (``"stream"``; moved to the GPU inside the pipeline with ``.gpu()``), or ``fn.readers.numpy`` reads the
  whole split once (``"reader"``; on the GPU through cuFile, i.e. GPUDirect Storage where the machine
  has it) and batches are gathered from that copy.

Why ``external_source`` and not DALI's own readers for batches: the contract exempts ``dali`` from the
shared sample order, but feeding DALI the shared sampler's batches costs nothing (reading a file's bytes
is cheap; decoding is the work DALI takes over) and makes ``dali`` comparable sample for sample: the
``.npy`` store and the lossless image stores give exactly the ``numpy`` loader's batches. For the
``.npy`` store a per-sample reader is no option either: the store holds the whole split in one file,
``fn.readers.numpy`` treats a file as one sample, and its GPU variant reads the whole file before
applying a region of interest, so reading one sample per ROI would read the split once per sample.

Without a GPU (or with ``device="cpu"``) the same loader builds DALI's CPU-only pipeline
(``device_id=None``, CPU decoders), so CI runs it. Parameters beyond the common ones (see
:mod:`thesislib.loaders.base`): ``num_workers`` is DALI's ``num_threads`` (at least 1); ``pin_memory`` is
unused (DALI stages copies in its own page-locked buffers); ``npy_read``: ``"auto"`` (``"reader"`` on a
GPU when the split takes at most half of the free GPU memory, else ``"stream"``), ``"stream"`` or
``"reader"``. :attr:`DaliLoader.npy_mode` says which one ran.
"""

import importlib.util
import os
import warnings

import numpy as np
import torch

from thesislib.envinfo import wheel_name
from thesislib.errors import ThesisError, choose
from thesislib.kernels.imagefiles import ReadSize
from thesislib.loaders.base import Loader
from thesislib.stores import imagefiles

NPY_READS = ("auto", "stream", "reader")
VRAM_SHARE = 0.5   # "auto" reads the whole split with fn.readers.numpy if it takes at most this share
PREFETCH = 2       # batches DALI prepares ahead (its prefetch_queue_depth)


class BatchSource:
    """``fn.external_source`` callback: batch ``iteration`` of the current epoch, then StopIteration.

    DALI calls it in the main thread, up to :data:`PREFETCH` batches ahead; ``batches`` is replaced (and
    the iterator reset) at the start of each epoch.
    """

    def __init__(self, read):
        self.read = read
        self.batches = []

    def __call__(self, iteration: int):
        if iteration >= len(self.batches):
            raise StopIteration
        return self.read(self.batches[iteration])


# How a complete file of each codec begins and ends (None: no fixed ending). Checked before DALI sees the
# bytes: DALI 2.4 can crash the process (not raise) when a decode fails while it feeds the next batch.
SIGNATURES = {
    "jpeg": (b"\xff\xd8\xff", b"\xff\xd9"),
    "png": (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"),
    "bmp": (b"BM", None),
    "tiff": ((b"II*\x00", b"MM\x00*"), None),
    "webp": (b"RIFF", None),
    "jp2": (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\xd9"),
}
SIZE_FIELDS = {"bmp": (2, 0), "webp": (4, 8)}  # (offset, extra): uint32 LE at offset + extra = file size


def looks_complete(data: bytes, codec: str) -> bool:
    """True if ``data`` begins (and, where the format says how, ends) as a whole ``codec`` file does."""
    head, tail = SIGNATURES[codec]
    if not data.startswith(head) or tail is not None and not data.rstrip(b"\x00").endswith(tail):
        return False
    if codec in SIZE_FIELDS:
        offset, extra = SIZE_FIELDS[codec]
        return int.from_bytes(data[offset:offset + 4], "little") + extra == len(data)
    return True


def error_summary(exc) -> str:
    """The line of a DALI error that says what went wrong (the one after "encountered:"), else the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "encountered:" in lines[:-1]:
        return lines[lines.index("encountered:") + 1]
    return lines[0] if lines else type(exc).__name__


def dali_dtype(dtype):
    from nvidia.dali import types

    return {np.dtype(np.uint8): types.UINT8, np.dtype(np.float16): types.FLOAT16,
            np.dtype(np.float32): types.FLOAT}[np.dtype(dtype)]


def files_pipeline(source, on_gpu: bool, **options):
    """Encoded bytes and labels from ``source``; images decoded to RGB on the GPU ("mixed") or the CPU."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def
    def pipeline():
        encoded, labels = fn.external_source(source=source, num_outputs=2, batch=True,
                                             dtype=[types.UINT8, types.INT64], ndim=[1, 0])
        images = fn.decoders.image(encoded, device="mixed" if on_gpu else "cpu", output_type=types.RGB)
        return images, labels.gpu() if on_gpu else labels

    return pipeline(**options)


def arrays_pipeline(source, dtype, on_gpu: bool, **options):
    """Image arrays (B, H, W, 3) and labels from ``source``, moved to the GPU in the pipeline if asked."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def
    def pipeline():
        images, labels = fn.external_source(source=source, num_outputs=2, batch=True, layout=["HWC", ""],
                                            dtype=[dali_dtype(dtype), types.INT64], ndim=[3, 0])
        return (images.gpu(), labels.gpu()) if on_gpu else (images, labels)

    return pipeline(**options)


def split_reader_pipeline(folder, file_name: str, on_gpu: bool, **options):
    """One sample: a whole ``.npy`` file, read by ``fn.readers.numpy`` (on the GPU through cuFile/GDS)."""
    from nvidia.dali import fn, pipeline_def

    @pipeline_def
    def pipeline():
        return fn.readers.numpy(device="gpu" if on_gpu else "cpu", file_root=str(folder), files=[file_name],
                                name="split")

    return pipeline(**options)


def shutdown(pipe) -> None:
    """Stop ``pipe``'s threads now; returns None (the pipeline is gone).

    Left to the garbage collector, a dropped pipeline caught in a reference cycle may be collected in a
    process forked later (a DataLoader worker, ``prepare``'s encoders), where its threads do not exist: its
    destructor then waits forever on their condition variable. ``_shutdown`` is what ``Pipeline.__del__``
    calls; DALI 2.4 has no public method for it.
    """
    if pipe is not None:
        pipe._shutdown()
    return None


class DaliLoader(Loader):
    """DALI pipelines over an image-file store or a .npy store; see the module docstring."""

    name = "dali"
    store_kinds = ("files", "npy")
    default_store = "files-jpeg"
    needs_gpu = False

    def __init__(self, store, split, *, batch_size, num_workers=0, pin_memory=False, seed=0, shuffle=True,
                 device="cpu", npy_read="auto"):
        super().__init__(store, split, batch_size=batch_size, num_workers=num_workers,
                         pin_memory=pin_memory, seed=seed, shuffle=shuffle, device=device)
        self.on_gpu = self.device.type == "cuda"
        if self.on_gpu and not torch.cuda.is_available():
            raise ThesisError(f"the dali loader was asked for device {device!r} but no CUDA GPU is visible: "
                              "use --device cpu (DALI then runs its CPU pipeline)")
        if self.on_gpu:
            self.device = torch.device("cuda", self.device.index if self.device.index is not None
                                       else torch.cuda.current_device())
        self.npy_read = choose("npy_read", npy_read, NPY_READS)
        self.npy_mode = None  # "stream" or "reader", chosen at the first iteration of a .npy store
        self._source = BatchSource(self._read_files if store.kind == "files" else self._read_arrays)
        self._paths = self._labels = self._images = None
        self._pipe = self._iterator = self._resident = None
        self._finished = True
        self._read_size = ReadSize()

    @classmethod
    def unavailable_reason(cls):
        if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
            return f"needs NVIDIA DALI: pip install {wheel_name('dali')}"
        return None

    def __iter__(self):
        self._open()
        if self.store.kind == "npy" and self._use_reader() and self._resident_split() is not None:
            yield from self._iter_resident()
            return
        yield from self._stream()

    def _stream(self):
        """This epoch's batches through DALI's iterator; a DALI failure becomes a ThesisError naming the file."""
        done = 0
        try:
            for outputs in self._epoch_iterator():
                yield outputs[0]["images"], outputs[0]["labels"]
                done += 1
        except RuntimeError as exc:  # DALI's "Critical error in pipeline": the pipeline is unusable now
            self._release_pipeline()
            raise self._explain(exc, self._source.batches[done:done + PREFETCH + 1]) from exc
        self._finished = True

    def _explain(self, exc, batches) -> ThesisError:
        """The error to show for DALI's ``exc`` while it read ``batches``: the corrupt file if one is found."""
        if self.store.kind == "files":
            for indices in batches:
                for index in indices:
                    imagefiles.decode(self._paths[index])  # raises a ThesisError naming a corrupt file
        return ThesisError(f"DALI failed while reading {self.store.path} ({error_summary(exc)}): delete the "
                           "store folder and run `python -m thesislib prepare` again")

    def _pipeline_options(self, batch_size: int, prefetch: int = PREFETCH) -> dict:
        return {"batch_size": batch_size, "num_threads": max(1, self.num_workers), "seed": self.seed,
                "device_id": self.device.index if self.on_gpu else None, "prefetch_queue_depth": prefetch}

    def _epoch_iterator(self):
        """DALI's PyTorch iterator, set to deliver this epoch's batches (built once, reset per epoch)."""
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        if not self._finished:
            self._release_pipeline()  # an epoch left unfinished: DALI cannot reset mid-epoch, so rebuild
        self._source.batches = self.batches()
        self._finished = False
        if self._iterator is not None:
            self._iterator.reset()  # the source is asked for the new epoch's first batches
            return self._iterator
        self._pipe = self._build_pipeline()
        self._iterator = DALIGenericIterator(self._pipe, ["images", "labels"], auto_reset=False,
                                             last_batch_policy=LastBatchPolicy.PARTIAL,
                                             prepare_first_batch=False)
        return self._iterator

    def _build_pipeline(self):
        options = self._pipeline_options(self.batch_size)
        if self.store.kind == "files":
            return files_pipeline(self._source, self.on_gpu, **options)
        return arrays_pipeline(self._source, self._images.dtype, self.on_gpu, **options)

    def _read_files(self, indices) -> tuple:
        """External-source batch: the encoded bytes of each file (checked: see SIGNATURES) and the labels."""
        return [self._read_file(self._paths[i]) for i in indices.tolist()], self._labels[indices]

    def _read_file(self, path) -> np.ndarray:
        """One file's bytes, read with ``os.open``/``os.read`` (:class:`~thesislib.kernels.imagefiles.ReadSize`:
        no Python file object per file)."""
        try:
            data = self._read_size.read(path)
        except OSError as exc:
            raise ThesisError(f"cannot read {path} ({exc}): delete {self.store.path} and run "
                              "`python -m thesislib prepare` again") from exc
        if not looks_complete(data, self.store.spec.codec):
            raise ThesisError(f"{path} is not a complete {self.store.spec.codec} file (corrupt or truncated): "
                              f"delete {self.store.path} and run `python -m thesislib prepare` again")
        return np.frombuffer(data, dtype=np.uint8)

    def _read_arrays(self, indices) -> tuple:
        """External-source batch: the images gathered from the memory map and the labels."""
        return np.take(self._images, indices, axis=0), self._labels[indices]

    def _use_reader(self) -> bool:
        if self.npy_mode is None:
            if self.npy_read != "auto":
                self.npy_mode = self.npy_read
            else:
                self.npy_mode = "reader" if self.on_gpu and self._fits_in_vram() else "stream"
        return self.npy_mode == "reader"

    def _fits_in_vram(self) -> bool:
        free, _ = torch.cuda.mem_get_info(self.device)
        return self._images.nbytes <= VRAM_SHARE * free

    def _resident_split(self):
        """The split read once by ``fn.readers.numpy``; None if that failed and ``npy_read`` is "auto"."""
        if self._resident is None:
            try:
                self._resident = self._read_whole_split()
            except RuntimeError as exc:  # DALI reports a cuFile/GDS or read failure as RuntimeError
                self._pipe = shutdown(self._pipe)
                if self.npy_read == "reader":
                    raise ThesisError(f"DALI's numpy reader could not read the {self.split} split of "
                                      f"{self.store.path} ({exc}): use npy_read='stream'") from exc
                warnings.warn(f"DALI's numpy reader failed ({exc}); the dali loader streams batches instead")
                self.npy_mode = "stream"
        return self._resident

    def _iter_resident(self):
        """Batches gathered (on the device) from the split that ``fn.readers.numpy`` read once."""
        images, labels = self._resident
        for indices in self.batches():
            positions = torch.from_numpy(indices).to(images.device, non_blocking=True)
            yield images.index_select(0, positions), labels.index_select(0, positions)

    def _read_whole_split(self) -> tuple:
        """(images (N, H, W, 3), labels (N,)) on the device; the images read by ``fn.readers.numpy``.

        The pipeline runs once (batch of one sample, no prefetch, so the file is read once) and stays
        alive: with DALI's dynamic executor the tensor shares the pipeline's output memory.
        """
        file_name = self.store.format.images_file(self.store, self.split).name
        self._pipe = split_reader_pipeline(self.store.path, file_name,
                                           self.on_gpu, **self._pipeline_options(1, prefetch=1))
        (output,) = self._pipe.run()
        images = torch.from_dlpack(output.as_tensor())[0]
        labels = torch.from_numpy(self._labels).to(images.device)
        return images, labels

    def _open(self) -> None:
        """List the files or map the arrays (once; :meth:`close` forgets them)."""
        if self._labels is not None:
            return
        if self.store.kind == "files":
            paths, self._labels = imagefiles.list_files(self.store.path, self.split, self.store.classes)
            self._paths = [os.fspath(path) for path in paths]  # a str is opened fastest
            return
        self._images, self._labels = self.store.format.mapped_split(self.store, self.split)

    def _release_pipeline(self) -> None:
        self._iterator, self._resident = None, None
        self._pipe = shutdown(self._pipe)
        self._finished = True

    def close(self) -> None:
        """Drop the pipeline (and its buffers), the memory map and the file list."""
        self._release_pipeline()
        self._paths = self._labels = self._images = None
        self.npy_mode = None
