"""The report: results rows -> loader x dataset tables with Student-t intervals, figures, environment."""

import json
import math

import pandas as pd
import pytest

from thesislib import cli, report
from thesislib.errors import ThesisError


def row(**changes) -> dict:
    """One results row with every contract column (invented numbers: a fixture, not a measurement)."""
    base = {"run_id": "r1", "started_at": "2025-01-01T00:00:00", "git_commit": "abc1234", "host": "box",
            "loader": "numpy", "store": "npy-uint8", "dataset": "cifar10", "scale": 0.01, "precision": "fp32",
            "device": "cpu", "model": "small", "epochs": 1, "batch_size": 32, "num_workers": 0, "seed": 0,
            "repeat": 0, "total_train_s": 2.0, "epoch_s_mean": 2.0, "data_s_mean": 0.5, "stall_pct": 25.0,
            "images_per_s": 100.0, "peak_ram_mb": 500.0, "peak_vram_mb": math.nan,
            "gpu_util_pct": math.nan, "cpu_util_pct": 50.0, "train_loss": 2.3, "val_acc": 0.1,
            "cache_state": "warm", "cached_pct": 100.0, "thesislib_version": "0.1.0"}
    return {**base, **changes}


def write_rows(path, rows) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


@pytest.fixture
def study(tmp_path):
    """Two loaders x two datasets, three repeats each, plus cold runs of the file loader."""
    rows = []
    for dataset in ("cifar10", "masks"):
        for repeat, speed in enumerate((100.0, 110.0, 120.0)):
            rows.append(row(dataset=dataset, repeat=repeat, images_per_s=speed))
            rows.append(row(dataset=dataset, repeat=repeat, loader="files", store="files-jpeg",
                            run_id="r2", images_per_s=speed / 4, data_s_mean=1.5, epoch_s_mean=3.0))
            rows.append(row(dataset=dataset, repeat=repeat, loader="files", store="files-jpeg", run_id="r3",
                            images_per_s=speed / 8, data_s_mean=4.5, epoch_s_mean=6.0,
                            cache_state="cold", cached_pct=0.0))
    return write_rows(tmp_path / "results.csv", rows)


def test_t_halfwidth_is_the_student_t_interval_of_the_mean():
    # mean 110, sd 10, n 3: t(0.975, 2) = 4.302653 -> 4.302653 * 10 / sqrt(3)
    assert report.t_halfwidth([100, 110, 120]) == pytest.approx(24.8414, abs=1e-4)
    assert report.t_interval([100, 110, 120]) == pytest.approx((85.1586, 134.8414), abs=1e-4)


def test_one_repeat_has_no_interval():
    assert math.isnan(report.t_halfwidth([100.0]))
    assert report.format_cell(100.0, math.nan) == "100 ± n/a"
    assert report.format_cell(math.nan, math.nan) == "n/a"


def test_cells_round_mean_and_interval_alike_to_three_significant_digits():
    assert report.format_cell(110.0, 24.8414) == "110 ± 25"
    assert report.format_cell(0.05234, 0.00123) == "0.0523 ± 0.0012"
    assert report.format_cell(12.345, 1.0) == "12.3 ± 1.0"


def test_table_has_methods_as_rows_and_datasets_split_warm_cold_as_columns(study):
    frame = report.read_results(study)
    table = report.metric_table(frame, "images_per_s")
    assert list(table.index) == ["files (files-jpeg)", "numpy (npy-uint8)"]
    assert list(table.columns) == ["cifar10 warm", "cifar10 cold", "masks warm", "masks cold"]
    assert table.loc["numpy (npy-uint8)", "masks warm"] == "110 ± 25"
    assert table.loc["files (files-jpeg)", "cifar10 cold"] == "13.8 ± 3.1"
    assert table.loc["numpy (npy-uint8)", "cifar10 cold"] == "–"   # not run


def test_a_file_without_cache_columns_reads_as_warm_runs(tmp_path):
    rows = [{k: v for k, v in row(repeat=i).items() if k not in report.OPTIONAL_COLUMNS} for i in range(2)]
    frame = report.read_results(write_rows(tmp_path / "old.csv", rows))
    assert set(frame["cache_state"]) == {"warm"}
    assert list(report.metric_table(frame, "images_per_s").columns) == ["cifar10"]


def test_a_missing_column_is_named_with_the_file(tmp_path):
    path = write_rows(tmp_path / "r.csv", [{k: v for k, v in row().items() if k != "stall_pct"}])
    with pytest.raises(ThesisError, match=r"r\.csv lacks column\(s\) stall_pct"):
        report.read_results(path)


def test_an_empty_file_and_a_header_only_file_say_so(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ThesisError, match="empty.csv is empty"):
        report.read_results(str(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text(",".join(report.RESULT_COLUMNS) + "\n")
    with pytest.raises(ThesisError, match="header.csv has a header but no rows"):
        report.read_results(str(tmp_path / "header.csv"))


def test_a_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ThesisError, match="not found: run `python -m thesislib bench"):
        report.read_results(str(tmp_path / "nothing.csv"))


def test_text_in_a_number_column_is_reported(tmp_path):
    path = write_rows(tmp_path / "r.csv", [row(images_per_s="fast")])
    with pytest.raises(ThesisError, match="column images_per_s holds text"):
        report.read_results(path)


def test_mixed_versions_are_refused_unless_allowed(tmp_path):
    first = write_rows(tmp_path / "a.csv", [row()])
    second = write_rows(tmp_path / "b.csv", [row(thesislib_version="0.2.0")])
    with pytest.raises(ThesisError, match=r"mix 2 versions of thesislib \(0\.1\.0 in a\.csv; 0\.2\.0 in b\.csv"):
        report.read_results([first, second])
    assert len(report.read_results(f"{first},{second}", allow_mixed=True)) == 2


def test_mixed_git_commits_are_refused(tmp_path):
    path = write_rows(tmp_path / "a.csv", [row(), row(git_commit="def5678", repeat=1)])
    with pytest.raises(ThesisError, match="mix 2 git commits"):
        report.read_results(path)


def test_a_setting_that_differs_within_a_cell_joins_the_row_label(tmp_path):
    path = write_rows(tmp_path / "r.csv", [row(), row(model="resnet18"), row(dataset="masks", scale=0.02)])
    frame = report.read_results(path)
    assert sorted(set(frame["method"])) == ["numpy (npy-uint8) model=resnet18", "numpy (npy-uint8) model=small"]


def test_parquet_results_are_read(tmp_path):
    pd.DataFrame([row(), row(repeat=1)]).to_parquet(tmp_path / "r.parquet")
    assert len(report.read_results(str(tmp_path / "r.parquet"))) == 2


def test_environment_table_shows_the_sidecar_of_the_runs(study):
    env = {"cpu": "Test CPU", "cpu_cores": 2, "ram_gb": 7.5, "vram_gb": None, "torch": "2.14.1",
           "numpy": "2.4", "extra": {"nested": 1}}
    lines = [json.dumps({"run_id": run_id, **env, "disk_free_gb": 50.0 - i})
             for i, run_id in enumerate(("r1", "r2", "r3", "other"))]
    report.env_path(study).write_text("\n".join(lines) + "\n")
    frame = report.read_results(study)
    table = report.environment_table(report.read_environments(study, frame), frame)
    assert table.loc["CPU", "value"] == "Test CPU"
    assert table.loc["RAM (GB)", "value"] == "7.5"
    assert table.loc["VRAM per GPU (GB)", "value"] == "–"
    assert table.loc["NumPy", "value"] == "2.4"
    assert table.loc["extra.nested", "value"] == "1"
    assert list(table.columns) == ["value"]   # free disk space differs per run: still one machine
    assert table.loc["thesislib", "value"] == "0.1.0"


def test_environment_falls_back_to_the_rows_without_a_sidecar(study):
    frame = report.read_results(study)
    table = report.environment_table(report.read_environments(study, frame), frame)
    assert table.loc["Host", "value"] == "box"


def test_two_machines_get_a_column_each(study):
    lines = [json.dumps({"run_id": "r1", "cpu": "A"}), json.dumps({"run_id": "r2", "cpu": "B"})]
    report.env_path(study).write_text("\n".join(lines) + "\n")
    frame = report.read_results(study)
    table = report.environment_table(report.read_environments(study, frame), frame)
    assert table.loc["CPU"].tolist() == ["A", "B"]


def test_a_damaged_sidecar_line_is_named(study):
    report.env_path(study).write_text('{"run_id": "r1"}\nnot json\n')
    with pytest.raises(ThesisError, match=r"line 2, is not JSON"):
        report.read_environments(study, report.read_results(study))


def test_reading_names_the_fastest_method_and_the_cold_cache_cost(study):
    text = report.reading(report.read_results(study))
    assert "cifar10 (warm cache): fastest is numpy (npy-uint8) at 110 images/s, 4.0x the slowest" in text
    assert "files (files-jpeg) on masks: data wait per epoch 1.5 s warm, 4.5 s with a cold page cache (3.0x)" in text
    assert "no rows for cupy, hdf5, zarr, dali, memory, torchvision" in text


def test_build_report_writes_every_table_and_figure(study, tmp_path):
    written = report.build_report([study], tmp_path / "figures")
    names = {path.name for path in written}
    for metric in report.METRICS:
        assert {f"05_table_{metric.column}.md", f"05_table_{metric.column}.tex"} <= names
    for figure in report.FIGURES:
        assert {f"{figure}.png", f"{figure}.pdf"} <= names
    assert all(path.stat().st_size > 0 for path in written)
    assert r"110 $\pm$ 25" in (tmp_path / "figures" / "05_table_images_per_s.tex").read_text()
    assert not [p for p in (tmp_path / "figures").iterdir() if p.name.startswith(".")]   # no temporaries


def test_report_command_prints_one_line_for_a_bad_file(tmp_path, capsys):
    assert cli.main(["report", "--results", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "none.csv not found" in error


def test_report_expects_exactly_the_columns_bench_writes():
    from thesislib import bench

    assert tuple(bench.COLUMNS) == (*report.RESULT_COLUMNS, *report.OPTIONAL_COLUMNS)


def test_example_rows_have_every_column_and_are_deterministic():
    first, second = report.example_results(seed=0), report.example_results(seed=0)
    assert list(first.columns) == [*report.RESULT_COLUMNS, *report.OPTIONAL_COLUMNS]
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.slow
def test_results_notebook_runs_on_a_results_file_made_by_the_test(study, tmp_path):
    import papermill

    from thesislib.paths import PROJECT_ROOT

    out = tmp_path / "figures"
    papermill.execute_notebook(str(PROJECT_ROOT / "notebooks" / "05_results.ipynb"), str(tmp_path / "05.ipynb"),
                               parameters={"results": study, "out": str(out)}, cwd=str(PROJECT_ROOT),
                               progress_bar=False)
    assert "110 ± 25" in (out / "05_table_images_per_s.md").read_text()
    assert (out / "05_warm_cold.png").stat().st_size > 0
    assert "fastest is numpy (npy-uint8)" in (out / "05_report.md").read_text()


def _run_study_module():
    import importlib.util

    from thesislib.paths import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("run_study", PROJECT_ROOT / "scripts" / "run_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_study_profile_covers_every_dataset_with_a_valid_scale():
    from thesislib.datasets import DATASETS, check_scale

    for profile in _run_study_module().PROFILES.values():
        assert set(profile["scales"]) == set(DATASETS)
        assert all(check_scale(scale) for scale in profile["scales"].values())


def test_run_study_refuses_an_unknown_loader(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_study_module().parse_args(["--loaders", "numpy,floppy"])
    assert exit_info.value.code == 2
    assert "unknown loader floppy" in capsys.readouterr().err
