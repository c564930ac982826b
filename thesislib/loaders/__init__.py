"""How images are read: the eight loaders of the contract, one module each behind :class:`base.Loader`.

Loader classes are imported lazily from :data:`LOADERS`, so a missing optional package (CuPy, DALI's GPU
parts) breaks only the loader that needs it. :func:`make_loader` is how the training protocol builds one.
"""

import importlib

from thesislib.errors import ThesisError, choose

LOADERS = {
    "files": "thesislib.loaders.files:FilesLoader",
    "numpy": "thesislib.loaders.numpy:NumpyLoader",
    "cupy": "thesislib.loaders.cupy:CupyLoader",
    "hdf5": "thesislib.loaders.hdf5:Hdf5Loader",
    "zarr": "thesislib.loaders.zarr:ZarrLoader",
    "dali": "thesislib.loaders.dali:DaliLoader",
    "memory": "thesislib.loaders.memory:MemoryLoader",
    "torchvision": "thesislib.loaders.torchvision:TorchvisionLoader",
}

DEFAULT_STORES = {
    "files": "files-jpeg", "torchvision": "files-jpeg", "dali": "files-jpeg",
    "numpy": "npy-uint8", "cupy": "npy-uint8", "memory": "npy-uint8",
    "hdf5": "hdf5", "zarr": "zarr",
}

GPU_LOADERS = ("cupy", "dali")


def no_gpu_reason():
    """Why a GPU loader cannot run here, or None if torch sees a CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return None
    return "needs a CUDA GPU: none found (torch.cuda.is_available() is False)"


def get_loader_class(name: str):
    """The Loader class of ``name``; a ThesisError if the name is unknown or its module cannot load."""
    module_name, class_name = LOADERS[choose("loader", name, LOADERS)].split(":")
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
