"""``python -m thesislib env``: the hardware and software of the thesis's section 2.6 table, which loaders
can run here (and why not), and warnings about CUDA wheels that do not match torch.

:func:`environment` is a flat, JSON-serialisable dict (the benchmark stores it beside its results);
:func:`format_environment` is what the command prints. Versions come from the installed distributions'
metadata, so the heavy GPU libraries are not imported just to be listed.
"""

import importlib.metadata
import os
import platform
import re
import socket
from pathlib import Path

import psutil

from thesislib import __version__
from thesislib import gpu, remote
from thesislib.paths import DATA_DIR, project_path

# Distributions whose version the table lists, by row (a row may be served by several wheel names).
SOFTWARE = {
    "torch": r"torch", "torchvision": r"torchvision", "numpy": r"numpy", "pillow": r"pillow",
    "h5py": r"h5py", "zarr": r"zarr", "dali": r"nvidia-dali(-cuda\d+)?", "cupy": r"cupy(-cuda\d+x)?",
    "kvikio": r"kvikio(-cu\d+)?", "nvidia_ml_py": r"nvidia-ml-py",
}

DEFAULT_CUDA = 13   # the CUDA major a wheel hint names when torch is a CPU-only build
# The CUDA wheel families: (library, wheel-name pattern with the CUDA major as group 1, name template).
CUDA_FAMILIES = [
    ("cupy", re.compile(r"cupy-cuda(\d+)x"), "cupy-cuda{}x"),
    ("DALI", re.compile(r"nvidia-dali-cuda(\d+)0"), "nvidia-dali-cuda{}0"),
    ("kvikio", re.compile(r"kvikio-cu(\d+)"), "kvikio-cu{}"),
]

LABELS = {
    "thesislib": "thesislib", "host": "Host", "os": "Operating system", "cpu": "CPU",
    "cpu_cores": "CPU cores (physical)", "cpu_threads": "CPU threads (logical)", "ram_gb": "RAM (GB)",
    "gpu": "GPU", "gpu_count": "GPUs", "vram_gb": "VRAM per GPU (GB)", "nvidia_driver": "NVIDIA driver",
    "cuda_driver": "CUDA (driver)", "data_dir": "Data folder", "disk": "Disk of the data folder",
    "disk_free_gb": "Disk free (GB)", "python": "Python", "torch": "PyTorch",
    "torch_cuda": "PyTorch built for CUDA", "torchvision": "torchvision", "numpy": "NumPy",
    "pillow": "Pillow", "h5py": "h5py", "zarr": "Zarr", "dali": "NVIDIA DALI", "cupy": "CuPy",
    "kvikio": "KvikIO", "gds": "GPUDirect Storage", "nvidia_ml_py": "nvidia-ml-py (NVML)",
}


def installed_distributions() -> dict:
    """{normalised distribution name: version} of everything installed in this Python."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            found[re.sub(r"[-_.]+", "-", name).lower()] = dist.version
    return found


def package_version(pattern: str, installed: dict) -> str:
    """The version of the distribution matching ``pattern`` (with its wheel name if it differs)."""
    hits = sorted(name for name in installed if re.fullmatch(pattern, name))
    if not hits:
        return "not installed"
    return ", ".join(installed[name] + ("" if name == pattern else f" ({name})") for name in hits)


def wheel_name(library: str, cuda=None) -> str:
    """The pip name of ``library`` ("cupy", "dali" or "kvikio") built for CUDA major ``cuda`` (a number or
    a version string); by default torch's, or 13 for a CPU-only torch."""
    if cuda is None:
        import torch

        cuda = torch.version.cuda or DEFAULT_CUDA
    templates = {name.lower(): template for name, _, template in CUDA_FAMILIES}
    return templates[library.lower()].format(cuda_major(cuda))


def cuda_major(version) -> int | None:
    """``"13.0"`` -> 13; None (a CPU-only torch) -> None."""
    return int(str(version).split(".")[0]) if version else None


def wheel_mismatches(torch_cuda, installed: dict, torch_version: str = "") -> list:
    """Warnings for CuPy/DALI/kvikio wheels whose CUDA major differs from torch's (``torch_cuda``)."""
    major = cuda_major(torch_cuda)
    warnings = []
    for library, pattern, template in CUDA_FAMILIES:
        found = sorted(name for name in installed if pattern.fullmatch(name))
        if len(found) > 1:
            warnings.append(f"several {library} wheels are installed ({', '.join(found)}): "
                            f"keep only {template.format(major or 'N')}")
        for name in found:
            family = int(pattern.fullmatch(name).group(1))
            if major is None and library != "DALI":  # DALI's CPU pipelines need no CUDA torch
                warnings.append(f"{name} needs a CUDA build of torch, but torch {torch_version} is "
                                f"CPU-only: install torch built for CUDA {family}, or uninstall {name}")
            elif major is not None and family != major:
                warnings.append(f"{name} is built for CUDA {family} but torch {torch_version} for CUDA "
                                f"{major}: `pip uninstall {name}` and `pip install {template.format(major)}`")
    return warnings


def cuda_wheel_mismatches() -> list:
    """Warnings for the installed CUDA wheels (cupy, DALI, kvikio) that do not match torch's CUDA major."""
    import torch

    return wheel_mismatches(torch.version.cuda, installed_distributions(), torch.__version__)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mount_of(path: Path):
    """The psutil partition holding ``path`` (the longest mount point that contains it), or None."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    parts = [p for p in psutil.disk_partitions(all=True) if path.is_relative_to(p.mountpoint)]
    return max(parts, key=lambda p: len(p.mountpoint), default=None)


def disk_kind(device: str) -> str:
    """"rotational" or "non-rotational" as the kernel flags the block device; "" if it does not say."""
    block = Path("/sys/class/block") / Path(os.path.realpath(device)).name
    for queue in (block / "queue", block.resolve().parent / "queue"):
        try:
            return "rotational" if (queue / "rotational").read_text().strip() == "1" else "non-rotational"
        except OSError:
            continue
    return ""


def disk_info(data_dir) -> dict:
    """Device, filesystem and free space of the disk that holds ``data_dir``."""
    path = project_path(data_dir)
    part = mount_of(path)
    if part is None:
        return {"disk": "unknown", "disk_free_gb": None}
    kind = disk_kind(part.device)
    usage = psutil.disk_usage(part.mountpoint)
    return {"disk": f"{part.device} ({part.fstype}{', ' + kind if kind else ''}) at {part.mountpoint}",
            "disk_free_gb": round(usage.free / 1e9, 1)}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_info() -> dict:
    """GPU names, count, VRAM and driver versions from NVML (torch as a fallback); "none" without.

    A figure NVML cannot give (``NVMLError``, e.g. under MIG) reads "unknown" instead of stopping `env`.
    """
    info = {"gpu": "none", "gpu_count": 0, "vram_gb": None, "nvidia_driver": "none", "cuda_driver": "none"}
    pynvml = gpu.nvml()
    if pynvml is not None:
        info.update(_nvml_info(pynvml))
    elif gpu.gpu_available():
        import torch

        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                    vram_gb=round(props.total_memory / 1e9, 1))
    return info


def _nvml_info(pynvml) -> dict:
    """The NVML part of :func:`gpu_info`; each figure "unknown" if its NVML call fails."""
    def ask(call, default="unknown"):
        try:
            return call()
        except pynvml.NVMLError:
            return default

    handles = ask(lambda: [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())],
                  default=[])
    cuda = ask(pynvml.nvmlSystemGetCudaDriverVersion_v2, default=None)
    info = {"nvidia_driver": ask(lambda: _text(pynvml.nvmlSystemGetDriverVersion())),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda is not None else "unknown",
            "gpu_count": len(handles)}
    if handles:
        names = {ask(lambda h=h: _text(pynvml.nvmlDeviceGetName(h))) for h in handles}
        info.update(gpu=", ".join(sorted(names)),
                    vram_gb=ask(lambda: round(pynvml.nvmlDeviceGetMemoryInfo(handles[0]).total / 1e9, 1), None))
    return info


def environment(data_dir=DATA_DIR) -> dict:
    """The hardware and software of this run as a flat, JSON-serialisable dict (section 2.6)."""
    import torch

    installed = installed_distributions()
    env = {
        "thesislib": __version__, "host": socket.gethostname(), "os": platform.platform(),
        "cpu": cpu_model(), "cpu_cores": psutil.cpu_count(logical=False) or psutil.cpu_count(),
        "cpu_threads": psutil.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        **gpu_info(), "data_dir": remote.resolve(data_dir),
        **({"disk": "remote", "disk_free_gb": None} if remote.is_url(data_dir) else disk_info(data_dir)),
        "python": platform.python_version(),
    }
    env.update({key: package_version(pattern, installed) for key, pattern in SOFTWARE.items()})
    env["torch_cuda"] = torch.version.cuda or "none (CPU-only build)"
    env["gds"] = gpu.gds_status()
    return env


def format_table(env: dict) -> str:
    """The section 2.6 table as a Markdown (GitHub) table, rows in :data:`LABELS` order."""
    from tabulate import tabulate

    rows = [(LABELS.get(key, key), "" if env.get(key) is None else env[key]) for key in LABELS if key in env]
    rows += [(key, value) for key, value in env.items() if key not in LABELS]
    return tabulate(rows, headers=["Item", "Value"], tablefmt="github", disable_numparse=True)


def format_loaders(availability: dict) -> str:
    width = max(map(len, availability), default=0)
    return "\n".join(f"  {name:<{width}}  {'available' if reason in (None, 'available') else reason}"
                     for name, reason in availability.items())


def format_environment(data_dir=DATA_DIR) -> str:
    """What ``python -m thesislib env`` prints: the table, one line per loader, then any warnings."""
    from thesislib.loaders import availability

    parts = ["Hardware and software (thesis, section 2.6)", "", format_table(environment(data_dir)), "",
             "Loaders:", format_loaders(availability())]
    warnings = cuda_wheel_mismatches()
    if warnings:
        parts += ["", "Warnings:", *(f"  - {warning}" for warning in warnings)]
    return "\n".join(parts)
