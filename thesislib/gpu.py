"""GPU figures for the profiler and the GPU loaders: is there a GPU, peak VRAM, utilisation through NVML,
and whether GPUDirect Storage works (through kvikio).

Every figure is NaN where no CUDA GPU exists, so a results row from a CPU-only machine has empty GPU cells
(the contract). :func:`gpu_available` and NVML only ask the driver; where a GPU exists, the other functions
use ``torch.cuda`` and so initialise CUDA in the calling process, as training on the GPU does anyway.

Peak VRAM is the larger of two views of the same memory:

* the allocators: torch's peak allocation (``torch.cuda.max_memory_allocated``) plus the bytes CuPy's
  default pool holds (when CuPy was imported, as the ``cupy`` loader does);
* the driver: this process's used memory as NVML reports it, sampled by :class:`GpuUtilSampler` and
  when :func:`peak_vram_mb` is called. It includes what neither allocator sees: DALI's buffers and the
  CUDA context itself (a few hundred MB).

NVML lists processes by their host PID; inside a container with its own PID namespace it may not find
this process, and the figure falls back to the allocators' view.

An NVML call that fails (``pynvml.NVMLError``: e.g. ``NotSupported`` for the utilisation of a MIG
instance or of its parent GPU) never stops a run: the figure it would have given is NaN.
"""

import importlib.util
import math
import os
import sys
import threading

_NVML = {"ready": None}   # NVML is initialised once per process, on first use
_PEAK = {"nvml_bytes": 0}  # highest per-process NVML figure seen since reset_peak_vram()


def gpu_available() -> bool:
    """True if torch sees a CUDA GPU (asks the driver; does not create a CUDA context)."""
    import torch

    return torch.cuda.is_available()


def torch_device_index(device=None) -> int:
    """The CUDA index of ``device`` ("cuda", "cuda:1", a torch.device or None: the current one)."""
    import torch

    device = torch.device("cuda") if device is None else torch.device(device)
    return device.index if device.index is not None else torch.cuda.current_device()


def gds_status() -> str:
    """GPUDirect Storage as kvikio sees it: "available", "compatibility mode" or "not installed".

    Compatibility mode means kvikio (and cuFile) read through host memory with POSIX I/O, because the
    nvidia-fs driver, a GDS-capable file system or a GPU is missing: reads still work, more slowly.
    """
    if importlib.util.find_spec("kvikio") is None:
        return "not installed"
    if not gpu_available():
        return "compatibility mode"
    try:
        import kvikio.defaults

        preferred = getattr(kvikio.defaults, "is_compat_mode_preferred", None)
        compat = preferred() if preferred else bool(kvikio.defaults.compat_mode())
    except Exception as exc:  # a kvikio too old or broken to say: report it rather than fail `env`
        return f"unknown ({type(exc).__name__}: {exc})"
    return "compatibility mode" if compat else "available"


def nvml():
    """The ``pynvml`` module, initialised; None where NVML (the driver) or nvidia-ml-py is missing."""
    if _NVML["ready"] is None:
        try:
            import pynvml

            pynvml.nvmlInit()
            _NVML["ready"] = pynvml
        except Exception:  # no driver, no library: NVML figures are simply absent
            _NVML["ready"] = False
    return _NVML["ready"] or None


def nvml_handle(device=None):
    """NVML's handle of torch's CUDA device ``device``, matched by UUID, else by PCI bus id; None if neither
    matches. Never by index: CUDA's and NVML's device orders differ (``CUDA_VISIBLE_DEVICES``, PCI order).

    A MIG instance is matched by its ``MIG-`` UUID where the driver knows it; the PCI bus id gives the
    parent GPU, whose per-process memory still holds this process's share.
    """
    pynvml = nvml()
    if pynvml is None or not gpu_available():
        return None
    import torch

    props = torch.cuda.get_device_properties(torch_device_index(device))
    for ask in (lambda: pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{props.uuid}"),
                lambda: pynvml.nvmlDeviceGetHandleByUUID(f"MIG-{props.uuid}"),
                lambda: pynvml.nvmlDeviceGetHandleByPciBusId(
                    f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0")):
        try:
            return ask()
        except pynvml.NVMLError:
            continue
    return None


def process_vram_bytes(handle) -> int:
    """This process's used GPU memory on ``handle`` according to NVML; 0 if NVML does not list it."""
    pynvml = nvml()
    try:
        processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:
        return 0
    return max((p.usedGpuMemory or 0 for p in processes if p.pid == os.getpid()), default=0)


def allocator_vram_bytes(device=None) -> int:
    """torch's peak allocation plus the bytes CuPy's default memory pool holds (if CuPy is in use)."""
    import torch

    total = torch.cuda.max_memory_allocated(torch_device_index(device))
    if "cupy" in sys.modules:
        total += sys.modules["cupy"].get_default_memory_pool().total_bytes()
    return total


def reset_peak_vram(device=None) -> None:
    """Start a new peak: reset torch's peak statistics, free CuPy's unused blocks, forget NVML's peak."""
    _PEAK["nvml_bytes"] = 0
    if not gpu_available():
        return
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats(torch_device_index(device))
    if "cupy" in sys.modules:
        sys.modules["cupy"].get_default_memory_pool().free_all_blocks()


def peak_vram_mb(device=None) -> float:
    """Peak VRAM in MiB since :func:`reset_peak_vram` (see the module docstring); NaN without a GPU."""
    if not gpu_available():
        return math.nan
    handle = nvml_handle(device)
    if handle is not None:
        _PEAK["nvml_bytes"] = max(_PEAK["nvml_bytes"], process_vram_bytes(handle))
    return max(allocator_vram_bytes(device), _PEAK["nvml_bytes"]) / 2**20


class GpuUtilSampler:
    """GPU utilisation (%) sampled through NVML; :meth:`mean` is NaN where there is no GPU or NVML.

    NVML reports the share of the last sample period (1/6 s to 1 s, by GPU) in which a kernel ran, so
    sample a few times a second: call :meth:`sample` from the loop, or :meth:`start` a background thread.
    Each sample also records this process's used VRAM for :func:`peak_vram_mb`.
    """

    def __init__(self, device=None):
        self.handle = nvml_handle(device)
        self.samples = []
        self._stop = threading.Event()
        self._thread = None

    def sample(self) -> float:
        """Read the utilisation now, keep it and return it (NaN without NVML).

        If NVML cannot report it (``NVMLError``, e.g. ``NotSupported`` under MIG), sampling stops for good:
        the handle is dropped and this and every later call return NaN.
        """
        if self.handle is None:
            return math.nan
        pynvml = nvml()
        try:
            value = float(pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        except pynvml.NVMLError:
            self.handle = None
            return math.nan
        self.samples.append(value)
        _PEAK["nvml_bytes"] = max(_PEAK["nvml_bytes"], process_vram_bytes(self.handle))
        return value

    def mean(self) -> float:
        """Mean of the samples taken so far; NaN if none (no GPU, or never sampled)."""
        return sum(self.samples) / len(self.samples) if self.samples else math.nan

    def start(self, interval_s: float = 0.2) -> "GpuUtilSampler":
        """Sample every ``interval_s`` seconds in a daemon thread until :meth:`stop` (no-op without NVML)."""
        if self.handle is not None and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
            self._thread.start()
        return self

    def stop(self) -> float:
        """Stop the background thread (if any) and return :meth:`mean`."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return self.mean()

    def _run(self, interval_s: float) -> None:
        while self.handle is not None and not self._stop.wait(interval_s):
            self.sample()
