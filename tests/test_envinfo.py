"""``python -m thesislib env``: the section 2.6 table, loader availability, CUDA wheel warnings, GPU figures."""

import json
import math

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
