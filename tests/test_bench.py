"""The protocol: one complete row per repeat, appended at once; the environment beside it; bad input as
one line on stderr with exit status 2."""

import json
import math

import pandas as pd
import pytest
import torch
from one_line import one_line_error

from thesislib import bench, pagecache
from thesislib.bench import BenchConfig, run_protocol
from thesislib.cli import main
from thesislib.errors import ThesisError
from thesislib.results import COLUMNS

TINY = 0.005  # the scale of the prepared_cifar10 fixture


def config(data_dir, **changes):
    settings = dict(loader="numpy", dataset="cifar10", epochs=1, repeats=2, batch_size=64, scale=TINY,
                    data_dir=str(data_dir), device="cpu")
    return BenchConfig(**{**settings, **changes})


CONTRACT_COLUMNS = [  # docs/CONTRACT.md's results columns, in its order
    "run_id", "started_at", "git_commit", "host", "loader", "store", "dataset", "scale", "precision",
    "device", "model", "epochs", "batch_size", "num_workers", "seed", "repeat", "total_train_s",
    "epoch_s_mean", "data_s_mean", "stall_pct", "images_per_s", "peak_ram_mb", "peak_vram_mb",
    "gpu_util_pct", "cpu_util_pct", "train_loss", "val_acc"]


def test_results_columns_are_the_contracts_in_its_order_and_then_the_extra_ones():
    assert list(COLUMNS[:27]) == CONTRACT_COLUMNS
    assert list(COLUMNS[27:32]) == ["cache_state", "cached_pct", "thesislib_version", "world_size", "rank"]


def test_two_repeats_write_two_complete_rows_and_one_environment_line(prepared_cifar10, tmp_path):
    results = tmp_path / "results.csv"
    rows = run_protocol(config(prepared_cifar10), results=results)
    frame = pd.read_csv(results)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 2 == len(rows)
    assert frame["repeat"].tolist() == [0, 1] and frame["run_id"].nunique() == 1
    measured = ["total_train_s", "epoch_s_mean", "data_s_mean", "stall_pct", "images_per_s", "peak_ram_mb",
                "cpu_util_pct", "train_loss", "val_acc", "cached_pct"]
    assert frame[measured].notna().all().all()
    assert (frame["cache_state"] == "warm").all() and (frame["precision"] == "uint8").all()
    assert (frame["world_size"] == 1).all() and (frame["rank"] == 0).all()  # one process: rank 0 of 1
    assert frame["train_loss"].iloc[0] == pytest.approx(frame["train_loss"].iloc[1], abs=1e-12)
    if not torch.cuda.is_available():
        assert frame[["peak_vram_mb", "gpu_util_pct"]].isna().all().all()
    env = [json.loads(line) for line in (tmp_path / "results.csv.env.jsonl").read_text().splitlines()]
    assert len(env) == 1 and env[0]["run_id"] == rows[0]["run_id"] and "torch" in env[0]


def test_parquet_results_gain_a_row_per_repeat(prepared_cifar10, tmp_path):
    results = tmp_path / "results.parquet"
    run_protocol(config(prepared_cifar10, repeats=1, model="none"), results=results)
    run_protocol(config(prepared_cifar10, repeats=1, model="none", loader="hdf5"), results=results)
    frame = pd.read_parquet(results)
    assert frame["loader"].tolist() == ["numpy", "hdf5"] and math.isnan(frame["train_loss"].iloc[0])


def test_a_crash_in_a_later_repeat_keeps_the_earlier_rows(prepared_cifar10, tmp_path, monkeypatch):
    results = tmp_path / "results.csv"
    real = bench.run_once

    def crash_on_second(config, store, repeat, run_id, commit="", **options):
        if repeat == 1:
            raise RuntimeError("simulated crash")
        return real(config, store, repeat, run_id, commit, **options)

    monkeypatch.setattr(bench, "run_once", crash_on_second)
    with pytest.raises(RuntimeError):
        run_protocol(config(prepared_cifar10, model="none"), results=results)
    assert len(pd.read_csv(results)) == 1


def test_an_older_results_file_without_the_new_columns_is_extended(prepared_cifar10, tmp_path):
    results = tmp_path / "results.csv"
    first = run_protocol(config(prepared_cifar10, repeats=1, model="none"))[0]
    pd.DataFrame([{key: first[key] for key in COLUMNS[:27]}]).to_csv(results, index=False)
    run_protocol(config(prepared_cifar10, repeats=1, model="none"), results=results)
    frame = pd.read_csv(results)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 2
    assert frame["thesislib_version"].isna().tolist() == [True, False]


def test_cold_runs_evict_the_store_before_each_epoch(prepared_cifar10):
    row = run_protocol(config(prepared_cifar10, repeats=1, epochs=2, model="none", cold=True))[0]
    assert row["cache_state"] == "cold" and row["cached_pct"] < 5


@pytest.mark.skipif(not pagecache.has_mincore(), reason="cached_pct needs mincore")
def test_warm_runs_read_the_store_first_so_that_even_an_evicted_store_starts_cached(prepared_cifar10):
    pagecache.evict(pagecache.store_files(prepared_cifar10 / "cifar10" / "npy-uint8"))
    row = run_protocol(config(prepared_cifar10, repeats=1, epochs=2, model="none"))[0]
    assert row["cache_state"] == "warm" and row["cached_pct"] > 95


def test_cold_runs_evict_and_measure_the_cache_outside_the_profiled_run(prepared_cifar10, monkeypatch):
    events = []

    class SpyProfiler(bench.Profiler):
        def start(self):
            events.append("profiler starts")
            return super().start()

        def stop(self):
            events.append(f"profiler stops, paused {self.paused_wall_s > 0}")
            return super().stop()

    real_evict, real_fraction = pagecache.evict, pagecache.resident_fraction
    monkeypatch.setattr(bench, "Profiler", SpyProfiler)
    monkeypatch.setattr(pagecache, "evict", lambda files: events.append("evict") or real_evict(files))
    monkeypatch.setattr(pagecache, "resident_fraction",
                        lambda files: events.append("measure") or real_fraction(files))
    run_protocol(config(prepared_cifar10, repeats=1, epochs=2, model="none", cold=True))
    assert events == ["evict", "measure", "profiler starts", "evict", "profiler stops, paused True"]
    events.clear()
    monkeypatch.setattr(pagecache, "read_through", lambda files: events.append("read") or 0)
    run_protocol(config(prepared_cifar10, repeats=1, epochs=2, model="none"))
    assert events == ["read", "measure", "profiler starts", "profiler stops, paused False"]


def test_a_loader_that_fails_to_build_closes_the_loader_built_before_it(prepared_cifar10, monkeypatch):
    from thesislib.loaders import memory

    built, real_check, real_make = [], memory.check_fits, bench.make_loader

    def fits_only_train(store, split, device):
        if split == "val":
            raise ThesisError("val does not fit")
        return real_check(store, split, device)

    def make_and_keep(*args, **kwargs):
        built.append(real_make(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(memory, "check_fits", fits_only_train)
    monkeypatch.setattr(bench, "make_loader", make_and_keep)
    with pytest.raises(ThesisError, match="val does not fit"):
        run_protocol(config(prepared_cifar10, loader="memory", repeats=1))
    assert len(built) == 1 and built[0].images is None  # the train split was freed


def test_sleep_model_makes_the_data_time_a_small_share(prepared_cifar10):
    row = run_protocol(config(prepared_cifar10, repeats=1, model="sleep:20"))[0]
    assert row["epoch_s_mean"] >= 4 * 0.020 and row["stall_pct"] < 50 and math.isnan(row["val_acc"])


# ------------------------------------------------------------------------------------------------ bad input
def bench_cli(data_dir, tmp_path, *options):
    return main(["bench", "--dataset", "cifar10", "--scale", str(TINY), "--data-dir", str(data_dir),
                 "--results", str(tmp_path / "r.csv"), *options])


def test_unknown_loader_exits_2_listing_the_loaders(prepared_cifar10, tmp_path, capsys):
    status = bench_cli(prepared_cifar10, tmp_path, "--loader", "ffcv")
    one_line_error(capsys, status, "unknown loader 'ffcv'", "files, torchvision, dali, numpy")


def test_unknown_dataset_exits_2_listing_the_datasets(tmp_path, capsys):
    status = main(["bench", "--loader", "numpy", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    one_line_error(capsys, status, "unknown dataset 'mnist'", "cifar10, tinyimagenet, masks")


def test_missing_store_names_the_prepare_to_run(tmp_path, capsys):
    status = bench_cli(tmp_path, tmp_path, "--loader", "hdf5")
    one_line_error(capsys, status, "is not prepared",
                          f"python -m thesislib prepare --dataset cifar10 --stores hdf5 --data-dir {tmp_path} "
                          f"--scale {TINY}")


def test_store_prepared_at_another_scale_is_refused_with_the_fix(prepared_cifar10, tmp_path):
    with pytest.raises(ThesisError, match=f"prepared at scale {TINY}, not 0.5.*--scale 0.5"):
        run_protocol(config(prepared_cifar10, scale=0.5))


@pytest.mark.parametrize("size", ["0", "-4"])
def test_batch_size_zero_or_negative_exits_2(prepared_cifar10, tmp_path, capsys, size):
    status = bench_cli(prepared_cifar10, tmp_path, "--loader", "numpy", "--batch-size", size)
    one_line_error(capsys, status, "--batch-size")


@pytest.mark.parametrize("size", [0, -4])
def test_batch_size_zero_or_negative_is_refused_by_the_library(prepared_cifar10, size):
    with pytest.raises(ThesisError, match="batch_size must be a whole number >= 1"):
        run_protocol(config(prepared_cifar10, batch_size=size))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a CUDA GPU")
def test_gpu_loader_without_a_gpu_exits_2_saying_a_cuda_gpu_is_needed(prepared_cifar10, tmp_path, capsys):
    status = bench_cli(prepared_cifar10, tmp_path, "--loader", "cupy")
    one_line_error(capsys, status, "loader 'cupy' needs a CUDA GPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a CUDA GPU")
def test_cuda_device_without_a_gpu_is_refused():
    with pytest.raises(ThesisError, match="--device cuda needs a CUDA GPU"):
        bench.resolve_device("cuda")


@pytest.mark.parametrize("device", ["auto:0", "cpu:9", "gpu", "cuda:x", "cuda:", "cuda:-1", "CPU"])
def test_a_device_that_is_not_auto_cpu_cuda_or_cuda_n_is_refused(device):
    with pytest.raises(ThesisError, match=f"unknown device '{device}': choose one of auto, cpu, cuda, cuda:N"):
        bench.resolve_device(device)


def test_a_cuda_index_beyond_the_machines_gpus_is_refused():
    count = torch.cuda.device_count()
    with pytest.raises(ThesisError, match=f"--device cuda:{count} (needs a CUDA GPU|: this machine has {count})"):
        bench.resolve_device(f"cuda:{count}")


def test_valid_devices_are_resolved():
    assert bench.resolve_device("cpu") == "cpu"
    assert bench.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert bench.resolve_device("cuda:0") == "cuda:0"


def test_results_file_of_another_kind_is_refused(prepared_cifar10, tmp_path):
    with pytest.raises(ThesisError, match="must end in .csv or .parquet"):
        run_protocol(config(prepared_cifar10), results=tmp_path / "r.xlsx")


def test_corrupt_jpeg_in_the_store_exits_2_naming_the_file(copy_store, tmp_path, capsys):
    from tests.test_loaders import corrupt_first_image

    path = corrupt_first_image(copy_store("files-jpeg"))
    status = bench_cli(copy_store.data_dir, tmp_path, "--loader", "files", "--model", "none")
    one_line_error(capsys, status, str(path), "corrupt")


# ------------------------------------------------------------------------------------------ notebook 04
NOTEBOOK = dict(loader="numpy", dataset="cifar10", store="", epochs=1, repeats=1, batch_size=64, num_workers=0,
                model="small", device="cpu", seed=0, scale=TINY, data_dir="data/quick",
                results="results/notebook_results.csv", cold=False, In=[], Out={})


def test_notebook_parameters_become_a_validated_config():
    config, results = bench.notebook_config({**NOTEBOOK, "epochs": "2", "scale": 1, "get_ipython": print})
    assert config.store == "npy-uint8" and config.epochs == 2 and config.scale == 1.0
    assert results.name == "notebook_results.csv" and results.is_absolute()


def test_unknown_notebook_parameter_is_refused_listing_the_valid_ones():
    with pytest.raises(ThesisError, match="unknown parameter.s. lodaer: 04_benchmark.ipynb takes loader, dataset"):
        bench.notebook_config({**NOTEBOOK, "lodaer": "numpy"})


@pytest.mark.parametrize("name, value, message", [("epochs", "two", "parameter epochs must be int"),
                                                  ("cold", 3, "parameter cold must be bool"),
                                                  ("batch_size", 0, "batch_size must be a whole number >= 1")])
def test_bad_notebook_values_are_named(name, value, message):
    with pytest.raises(ThesisError, match=message):
        bench.notebook_config({**NOTEBOOK, name: value})


def test_prepare_if_missing_builds_only_a_missing_store(tmp_path):
    config = bench.validate(BenchConfig("numpy", "cifar10", scale=TINY, data_dir=str(tmp_path)))
    path = bench.prepare_if_missing(config)
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert bench.prepare_if_missing(config) == path and (path / "manifest.json").stat().st_mtime_ns == stamp


def test_decode_fast_is_recorded_and_the_report_keeps_it_apart_from_exact(prepared_cifar10, tmp_path):
    from thesislib.report.load import read_results

    results = tmp_path / "results.csv"
    for decode in ("exact", "fast"):
        run_protocol(config(prepared_cifar10, loader="files", store="files-jpeg", repeats=1, model="none",
                            decode=decode), results=results)
    assert pd.read_csv(results)["decode"].tolist() == ["exact", "fast"]
    methods = read_results(str(results))["method"].tolist()
    assert methods == ["files (files-jpeg) decode=exact", "files (files-jpeg) decode=fast"]


def test_an_older_results_file_reads_as_exact_decodes(prepared_cifar10, tmp_path):
    from thesislib.report.load import read_results

    results = tmp_path / "results.csv"
    run_protocol(config(prepared_cifar10, repeats=1, model="none"), results=results)
    pd.read_csv(results).drop(columns="decode").to_csv(results, index=False)
    frame = read_results(str(results))
    assert frame["decode"].tolist() == ["exact"] and frame["method"].tolist() == ["numpy (npy-uint8)"]


@pytest.mark.parametrize("loader, store", [("numpy", "npy-uint8"), ("files", "files-png")])
def test_decode_fast_where_nothing_is_jpeg_exits_2_naming_the_store(prepared_cifar10, tmp_path, capsys, loader,
                                                                     store):
    status = bench_cli(prepared_cifar10, tmp_path, "--loader", loader, "--store", store, "--decode", "fast")
    one_line_error(capsys, status, f"--decode fast applies to the JPEG stores", f"not to the {loader} loader on {store}")
