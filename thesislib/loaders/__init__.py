"""How images are read: every loader of the contract, behind :class:`base.Loader`.

Two kinds of registration, both derived in the order of the format registry
(:data:`thesislib.stores.FORMATS`):

* every format with a random-access reader (its module's ``LOADER``) gets the one batch loader,
  :class:`base.FormatLoader`, under that name (``files``, ``numpy``, ``hdf5``, ``zarr``, ``lmdb``,
  ``parquet``, ...); its default store is the format's first store;
* loaders with a class of their own are listed in :data:`CLASS_LOADERS` (class, default store) and placed
  after the batch loader of their default store's format.

Loader classes are imported lazily, so a missing optional package (CuPy, DALI's GPU parts, a format's
library) breaks only the loader that needs it. :func:`make_loader` is how the training protocol builds one.
"""

import functools
import importlib

from thesislib.errors import ThesisError, choose
from thesislib.stores import FORMATS, STORES, format_of

CLASS_LOADERS = {  # name -> (its class, its default store); one line per loader with a class of its own
    "torchvision": ("thesislib.loaders.torchvision:TorchvisionLoader", "files-jpeg"),
    "dali": ("thesislib.loaders.dali:DaliLoader", "files-jpeg"),
    "cupy": ("thesislib.loaders.cupy:CupyLoader", "npy-uint8"),
    "memory": ("thesislib.loaders.memory:MemoryLoader", "npy-uint8"),
    "tfdata": ("thesislib.loaders.tfdata:TfDataLoader", "tfrecord"),
    "webdataset": ("thesislib.loaders.webdataset:WebDatasetLoader", "webdataset"),
}


def registered_loaders() -> dict:
    """{loader name: (where its class is, default store)} in the format registry's order: a format's batch
    loader (``"format:<kind>"``), then the class loaders whose default store is of that format."""
    table = {}
    for kind in FORMATS:
        fmt = format_of(kind)
        if getattr(fmt, "LOADER", None):
            table[fmt.LOADER] = (f"format:{kind}", fmt.STORES[0].name)
        table.update({name: entry for name, entry in CLASS_LOADERS.items() if STORES[entry[1]].kind == kind})
    return table


LOADERS = registered_loaders()
DEFAULT_STORES = {name: store for name, (_, store) in LOADERS.items()}
GPU_LOADERS = ("cupy", "dali")


def loader_order() -> list:
    """Loader names in the report's order (the format registry's order): ``report.py``'s ``LOADER_ORDER``."""
    return list(LOADERS)


def no_gpu_reason():
    """Why a GPU loader cannot run here, or None if torch sees a CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return None
    return "needs a CUDA GPU: none found (torch.cuda.is_available() is False)"


@functools.cache
def format_loader_class(name: str, kind: str):
    """The batch loader class registered as ``name``: :class:`base.FormatLoader` over format ``kind``."""
    from thesislib.loaders.base import FormatLoader

    fmt = format_of(kind)
    return type(f"{name.title().replace('-', '')}Loader", (FormatLoader,),
                {"name": name, "store_kinds": (kind,), "default_store": fmt.STORES[0].name,
                 "__module__": FormatLoader.__module__, "__doc__": fmt.__doc__})


def get_loader_class(name: str):
    """The Loader class of ``name``; a ThesisError if the name is unknown or its module cannot load."""
    target = LOADERS[choose("loader", name, LOADERS)][0]
    if target.startswith("format:"):
        return format_loader_class(name, target.split(":", 1)[1])
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        reason = no_gpu_reason() if name in GPU_LOADERS else None
        raise ThesisError(f"loader {name!r} {reason or f'cannot be imported ({exc})'}"
                          + ("" if reason else ": install the project's extras (pip install -e '.[gpu]')")
                          ) from exc
    return getattr(module, class_name)


def unavailable_reason(name: str):
    """None if loader ``name`` can run on this machine, else the reason."""
    try:
        cls = get_loader_class(name)
    except ThesisError as exc:
        return str(exc).split(f"loader {name!r} ", 1)[-1]
    if cls.needs_gpu and no_gpu_reason():
        return no_gpu_reason()
    return cls.unavailable_reason()


def availability() -> dict:
    """{loader: "available" or the reason it cannot run here}, for ``python -m thesislib env``."""
    return {name: unavailable_reason(name) or "available" for name in LOADERS}


def check_available(name: str):
    """The Loader class of ``name``, or a ThesisError saying why it cannot run on this machine."""
    cls = get_loader_class(name)
    reason = unavailable_reason(name)
    if reason:
        raise ThesisError(f"loader {name!r} {reason}")
    return cls


def make_loader(name: str, store, split: str, **kwargs):
    """Loader ``name`` over ``split`` of ``store`` (see :mod:`thesislib.loaders.base` for ``kwargs``)."""
    return check_available(name)(store, split, **kwargs)
