"""``python -m thesislib env``: the section 2.6 table, loader availability, CUDA wheel warnings, GPU figures."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from thesislib import envinfo, gpu
from thesislib.cli import main
from thesislib.loaders import LOADERS

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the figures of a machine without a GPU")
ROWS = ["host", "os", "cpu", "cpu_cores", "ram_gb", "gpu", "vram_gb", "nvidia_driver", "disk", "python",
        "torch", "torch_cuda", "torchvision", "numpy", "pillow", "h5py", "zarr", "dali", "cupy", "kvikio", "gds"]


def test_environment_is_a_flat_json_serialisable_dict_with_the_section_2_6_rows(tmp_path):
    env = envinfo.environment(tmp_path)
    assert set(ROWS) <= set(env)
    assert all(value is None or isinstance(value, (str, int, float)) for value in env.values())
    assert json.loads(json.dumps(env)) == env
    assert env["torch"] == torch.__version__.split("+")[0] and env["python"].count(".") == 2


def test_environment_names_the_disk_that_holds_the_data_folder(tmp_path):
    env = envinfo.environment(tmp_path / "not" / "created" / "yet")
    assert env["disk"] != "unknown" and " at /" in env["disk"] and env["disk_free_gb"] > 0


def test_gds_is_one_of_three_states():
    assert gpu.gds_status() in ("available", "compatibility mode", "not installed")


def test_package_version_names_the_wheel_of_a_cuda_family():
    installed = {"cupy-cuda13x": "14.2.0", "numpy": "2.4.0"}
    assert envinfo.package_version(envinfo.SOFTWARE["cupy"], installed) == "14.2.0 (cupy-cuda13x)"
    assert envinfo.package_version(envinfo.SOFTWARE["numpy"], installed) == "2.4.0"
    assert envinfo.package_version(envinfo.SOFTWARE["kvikio"], installed) == "not installed"


def test_matching_cuda_wheels_raise_no_warning():
    installed = {"cupy-cuda13x": "14", "nvidia-dali-cuda130": "2.4", "kvikio-cu13": "26", "torch": "2.14.1"}
    assert envinfo.wheel_mismatches("13.0", installed, "2.14.1") == []


def test_a_cuda_12_wheel_under_a_cuda_13_torch_is_named_with_its_replacement():
    installed = {"cupy-cuda12x": "13", "nvidia-dali-cuda120": "1.50", "kvikio-cu13": "26"}
    warnings = envinfo.wheel_mismatches("13.0", installed, "2.14.1")
    assert len(warnings) == 2
    assert "cupy-cuda12x is built for CUDA 12" in warnings[0] and "pip install cupy-cuda13x" in warnings[0]
    assert "nvidia-dali-cuda120" in warnings[1] and "pip install nvidia-dali-cuda130" in warnings[1]


def test_two_families_of_one_library_are_flagged():
    warnings = envinfo.wheel_mismatches("12.4", {"cupy-cuda12x": "13", "cupy-cuda13x": "14"}, "2.5")
    assert any("several cupy wheels" in w and "keep only cupy-cuda12x" in w for w in warnings)


def test_a_cpu_only_torch_warns_for_cupy_and_kvikio_but_not_dali():
    installed = {"cupy-cuda13x": "14", "nvidia-dali-cuda130": "2.4", "kvikio-cu13": "26"}
    warnings = envinfo.wheel_mismatches(None, installed, "2.14.1+cpu")
    assert len(warnings) == 2 and all("CPU-only" in w for w in warnings)
    assert not any("dali" in w for w in warnings)


def test_the_installed_wheels_are_checked_against_the_installed_torch():
    warnings = envinfo.cuda_wheel_mismatches()
    assert isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)


def test_env_command_prints_the_table_and_one_line_per_loader(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "| GPUDirect Storage" in out and "| PyTorch built for CUDA" in out and "| NVIDIA DALI" in out
    loader_lines = out.split("Loaders:\n", 1)[1].splitlines()
    for name in LOADERS:
        assert any(line.split()[:1] == [name] for line in loader_lines), name
    assert any(line.split()[:2] == ["dali", "available"] for line in loader_lines)


@NO_GPU
def test_without_a_gpu_the_table_says_none_and_cupy_says_why(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "| GPU " in out and "| none" in out
    assert any(line.split()[:1] == ["cupy"] and "needs a CUDA GPU" in line for line in out.splitlines())


@NO_GPU
def test_gpu_figures_are_nan_without_a_gpu():
    gpu.reset_peak_vram()
    assert math.isnan(gpu.peak_vram_mb())
    sampler = gpu.GpuUtilSampler()
    assert math.isnan(sampler.sample()) and math.isnan(sampler.mean())
    assert math.isnan(sampler.start().stop()) and not gpu.gpu_available()


def test_wheel_names_follow_the_cuda_major():
    assert envinfo.wheel_name("cupy", "12.4") == "cupy-cuda12x"
    assert envinfo.wheel_name("dali", 13) == "nvidia-dali-cuda130"
    assert envinfo.wheel_name("kvikio", "13.0") == "kvikio-cu13"
    assert envinfo.wheel_name("cupy") == f"cupy-cuda{envinfo.cuda_major(torch.version.cuda or 13)}x"


class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError (e.g. NVMLError_NotSupported)."""


def fake_nvml(**calls):
    """A pynvml stand-in: every nvml* function raises FakeNVMLError unless given in ``calls``."""
    def fails(*args):
        raise FakeNVMLError("Not Supported")

    names = ["nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlSystemGetCudaDriverVersion_v2",
             "nvmlSystemGetDriverVersion", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo",
             "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetComputeRunningProcesses",
             "nvmlDeviceGetHandleByUUID", "nvmlDeviceGetHandleByPciBusId"]
    return SimpleNamespace(NVMLError=FakeNVMLError, **{name: calls.get(name, fails) for name in names})


def test_env_reads_unknown_where_nvml_cannot_say(monkeypatch):
    monkeypatch.setattr(gpu, "nvml", lambda: fake_nvml(nvmlDeviceGetCount=lambda: 1,
                                                      nvmlDeviceGetHandleByIndex=lambda i: "parent"))
    info = envinfo.gpu_info()
    assert info == {"gpu": "unknown", "gpu_count": 1, "vram_gb": None, "nvidia_driver": "unknown",
                    "cuda_driver": "unknown"}
    monkeypatch.setattr(gpu, "nvml", lambda: fake_nvml())
    assert envinfo.gpu_info()["gpu_count"] == 0


def test_the_gpu_sampler_gives_nan_and_stops_when_nvml_does_not_support_utilisation(monkeypatch):
    monkeypatch.setattr(gpu, "nvml", lambda: fake_nvml())
    monkeypatch.setattr(gpu, "nvml_handle", lambda device=None: "mig parent")
    sampler = gpu.GpuUtilSampler()
    assert math.isnan(sampler.sample()) and sampler.handle is None and sampler.samples == []
    threaded = gpu.GpuUtilSampler().start(interval_s=0.01)
    threaded._thread.join(timeout=5)   # the thread ends by itself once NVML refuses
    assert not threaded._thread.is_alive() and math.isnan(threaded.stop())


def test_the_gpu_sampler_keeps_its_samples_when_nvml_fails_later(monkeypatch):
    answers = iter([SimpleNamespace(gpu=40), SimpleNamespace(gpu=60)])

    def utilisation(handle):
        try:
            return next(answers)
        except StopIteration:
            raise FakeNVMLError("GPU is lost") from None

    monkeypatch.setattr(gpu, "nvml", lambda: fake_nvml(nvmlDeviceGetUtilizationRates=utilisation))
    monkeypatch.setattr(gpu, "nvml_handle", lambda device=None: "handle")
    sampler = gpu.GpuUtilSampler()
    assert [sampler.sample(), sampler.sample()] == [40.0, 60.0]
    assert math.isnan(sampler.sample()) and sampler.mean() == 50.0


def gpu_props(monkeypatch, nvml_module):
    monkeypatch.setattr(gpu, "nvml", lambda: nvml_module)
    monkeypatch.setattr(gpu, "gpu_available", lambda: True)
    monkeypatch.setattr(gpu, "torch_device_index", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(uuid="0c2f-77", pci_domain_id=0, pci_bus_id=0x3B,
                                                      pci_device_id=0))


def test_nvml_handle_matches_by_uuid_or_pci_bus_and_never_by_index(monkeypatch):
    asked = []

    def by_pci(bus_id):
        asked.append(bus_id)
        raise FakeNVMLError("Not Found")

    gpu_props(monkeypatch, fake_nvml(nvmlDeviceGetHandleByPciBusId=by_pci,
                                     nvmlDeviceGetHandleByIndex=lambda i: "some other GPU"))
    assert gpu.nvml_handle() is None
    assert asked == ["00000000:3B:00.0"]


def test_nvml_handle_finds_a_mig_instance_by_its_uuid(monkeypatch):
    def by_uuid(uuid):
        if uuid != "MIG-0c2f-77":
            raise FakeNVMLError("Not Found")
        return "mig instance"

    gpu_props(monkeypatch, fake_nvml(nvmlDeviceGetHandleByUUID=by_uuid))
    assert gpu.nvml_handle() == "mig instance"
