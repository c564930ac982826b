"""The report: results rows -> loader x dataset tables with Student-t intervals, figures, environment."""

import json
import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from run_study_script import run_study_module
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
                            run_id="r2", images_per_s=speed / 4, data_s_mean=1.5 + repeat / 10,
                            epoch_s_mean=3.0))
            rows.append(row(dataset=dataset, repeat=repeat, loader="files", store="files-jpeg", run_id="r3",
                            images_per_s=speed / 8, data_s_mean=4.5 + repeat / 10, epoch_s_mean=6.0,
                            cache_state="cold", cached_pct=0.0, peak_ram_mb=900.0 + repeat))
    return write_rows(tmp_path / "results.csv", rows)


def three_methods(**spread) -> list:
    """numpy, hdf5 and files on cifar10, three repeats: a fixture for the tested winners of the reading.

    ``spread``: {column: {loader: (three values)}}, over the defaults of :func:`row`.
    """
    stores = {"numpy": "npy-uint8", "hdf5": "hdf5", "files": "files-jpeg"}
    speeds = {"numpy": (200, 210, 220), "hdf5": (100, 110, 120), "files": (50, 55, 60)}
    return [row(loader=loader, store=store, repeat=i, run_id=f"r-{loader}", images_per_s=speeds[loader][i],
                **{column: values[loader][i] for column, values in spread.items()})
            for loader, store in stores.items() for i in range(3)]


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
    assert ("fastest is numpy (npy-uint8) at 110 images/s; lead over files (files-jpeg) "
            "(28 images/s, 4.0x): significant (Welch p = ") in text
    assert ("files (files-jpeg) on masks: data wait per epoch 1.6 s warm, 4.6 s with a cold page cache (2.9x), "
            "a difference that is significant (Welch p = ") in text
    assert "no rows for torchvision, dali, cupy, memory, hdf5, zarr, lmdb, parquet, tfrecord, tfdata, webdataset" in text


def test_reading_leads_with_training_time_then_data_wait_then_throughput(study):
    line = next(line for line in report.reading(report.read_results(study)).splitlines()
                if line.startswith("- cifar10 (warm cache): "))
    assert line.index("training time") < line.index("data wait per epoch") < line.index("images/s"), line


def test_reading_of_a_cell_with_one_method_names_no_winner(study):
    text = report.reading(report.read_results(study))
    assert "- cifar10 (cold cache): only files (files-jpeg) was run (14 images/s).\n" in text
    assert "least" not in text.split("cifar10 (cold cache)")[1].split("\n")[0]


def test_a_lead_within_noise_is_not_called_the_fastest(tmp_path):
    rows = [row(images_per_s=v, repeat=i) for i, v in enumerate((100, 150, 60))]
    rows += [row(loader="hdf5", store="hdf5", images_per_s=v, repeat=i) for i, v in enumerate((90, 140, 70))]
    text = report.reading(report.read_results(write_rows(tmp_path / "r.csv", rows)))
    assert "highest mean throughput: numpy (npy-uint8) at 103 images/s" in text and "fastest" not in text
    assert "lead over hdf5 (hdf5) (100 images/s, 1.0x): not significant (Welch p = 0.9" in text


def test_the_gap_to_the_slowest_is_tested_too(tmp_path):
    text = report.reading(report.read_results(write_rows(tmp_path / "r.csv", three_methods())))
    assert "over the slowest, files (files-jpeg) (55 images/s, 3.8x): significant (Welch p = " in text


def test_least_stall_and_ram_are_named_only_when_the_test_separates_them(tmp_path):
    spread = {"stall_pct": {"numpy": (5, 6, 7), "hdf5": (20, 21, 22), "files": (40, 41, 42)},
              "peak_ram_mb": {"numpy": (740, 790, 700), "hdf5": (743, 700, 786), "files": (900, 901, 902)}}
    text = report.reading(report.read_results(write_rows(tmp_path / "r.csv", three_methods(**spread))))
    assert ("least stall: numpy (npy-uint8) (6.0% of the epoch; next hdf5 (hdf5), 21.0% of the epoch: "
            "significant") in text
    assert "least peak RAM" not in text
    assert ("peak RAM: differences within noise (lowest hdf5 (hdf5), 743 MiB; next numpy (npy-uint8), 743 MiB: "
            "not significant (Welch p = ") in text


def test_a_cold_cache_cost_within_noise_says_so(tmp_path):
    rows = [row(loader="files", store="files-jpeg", repeat=i, data_s_mean=v) for i, v in enumerate((0.2, 0.7, 0.3))]
    rows += [row(loader="files", store="files-jpeg", repeat=i, data_s_mean=v, cache_state="cold")
             for i, v in enumerate((0.5, 0.2, 0.6))]
    text = report.reading(report.read_results(write_rows(tmp_path / "r.csv", rows)))
    assert ("0.4 s warm, 0.433 s with a cold page cache (1.1x), a difference that is not significant "
            "(Welch p = 0.8") in text


def test_the_memory_figure_keeps_warm_and_cold_runs_apart(study):
    frame = report.read_results(study)
    long = report.memory_rows(frame)
    means = long.groupby(["method", "dataset", "memory"])["peak_mib"].mean()
    assert means[("files (files-jpeg)", "cifar10", "RAM, warm cache")] == 500.0
    assert means[("files (files-jpeg)", "cifar10", "RAM, cold cache")] == 901.0
    figure = report.memory_figure(frame)
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert labels == ["RAM, warm cache", "RAM, cold cache"]
    assert all(ax.get_xlim()[0] == 0 for ax in figure.axes)
    assert figure.get_supxlabel() == "peak memory (MiB)"
    plt.close(figure)


def test_the_memory_figure_of_warm_runs_alone_has_no_legend(tmp_path):
    frame = report.read_results(write_rows(tmp_path / "r.csv", [row(repeat=i) for i in range(2)]))
    figure = report.memory_figure(frame)
    assert set(report.memory_rows(frame)["memory"]) == {"RAM"}
    assert not [text for legend in figure.legends for text in legend.get_texts()]
    plt.close(figure)


def test_memory_is_labelled_in_mib_as_the_profiler_counts_it():
    assert report.METRIC_BY_COLUMN["peak_ram_mb"].label == "peak RAM (MiB)"
    assert report.METRIC_BY_COLUMN["peak_vram_mb"].label == "peak VRAM (MiB)"


def test_rows_of_two_hosts_are_never_pooled(tmp_path):
    rows = [row(repeat=i, images_per_s=100.0) for i in range(2)]
    rows += [row(repeat=i, images_per_s=300.0, host="other", run_id="r9") for i in range(2)]
    frame = report.read_results(write_rows(tmp_path / "r.csv", rows))
    table = report.metric_table(frame, "images_per_s")
    assert list(table.index) == ["numpy (npy-uint8) host=box", "numpy (npy-uint8) host=other"]
    assert table["cifar10"].tolist() == ["100 ± 0", "300 ± 0"]


def test_latex_escaping_keeps_backslash_tilde_and_caret_printable():
    assert report.latex_escape("C:\\data_1") == r"C:\textbackslash{}data\_1"
    assert report.latex_escape("~/x^2 {a} 50%") == r"\textasciitilde{}/x\textasciicircum{}2 \{a\} 50\%"
    latex = report.to_latex(pd.DataFrame({"a\\b": ["1 ± 2"]}, index=pd.Index(["x~y"], name="m")), "c_1", "tab:t")
    assert r"a\textbackslash{}b" in latex and r"x\textasciitilde{}y" in latex and "\\\\b" not in latex


def test_sidecar_lines_of_other_runs_are_not_shown(study):
    report.env_path(study).write_text(json.dumps({"run_id": "elsewhere", "cpu": "Other CPU"}) + "\n")
    frame = report.read_results(study)
    assert report.read_environments(study, frame) == []
    table = report.environment_table([], frame)
    assert table.loc["Host", "value"] == "box" and "CPU" not in table.index


def test_captions_say_when_few_repeats_make_intervals_wide(tmp_path):
    rows = [row(repeat=i, images_per_s=100.0 + i) for i in range(2)]
    frame = report.read_results(write_rows(tmp_path / "r.csv", rows))
    assert "Few repeats: with n = 2 (df = 1) a half-width is 12.7 standard errors" in \
        report.table_caption(frame, "images_per_s")
    many = [row(repeat=i, images_per_s=100.0 + i) for i in range(10)]
    frame = report.read_results(write_rows(tmp_path / "m.csv", many))
    assert "Few repeats" not in report.table_caption(frame, "images_per_s")


def test_wide_intervals_are_cut_at_zero_in_the_bar_figures(tmp_path):
    rows = [row(repeat=i, images_per_s=v) for i, v in enumerate((10.0, 200.0))]
    frame = report.read_results(write_rows(tmp_path / "r.csv", rows))
    for make in (report.throughput_figure, report.epoch_split_figure):
        figure = make(frame)
        assert all(ax.get_xlim()[0] == 0 for ax in figure.axes)
        plt.close(figure)


def test_the_report_page_links_only_the_figures_written(tmp_path):
    rows = [row(repeat=i, peak_ram_mb=math.nan) for i in range(2)]   # no memory figure, no cold runs
    path = write_rows(tmp_path / "r.csv", rows)
    report.build_report([path], tmp_path / "out")
    page = (tmp_path / "out" / "05_report.md").read_text()
    assert "![05_throughput](05_throughput.png)" in page
    assert "05_peak_memory" not in page and "05_warm_cold" not in page
    assert not (tmp_path / "out" / "05_peak_memory.png").exists()


def test_a_note_marks_captions_and_the_report_page(study, tmp_path):
    report.build_report([study], tmp_path / "out", note=" (example rows, invented)")
    assert "throughput (images/s) (example rows, invented): mean" in \
        (tmp_path / "out" / "05_table_images_per_s.md").read_text()
    assert "(example rows, invented)" in (tmp_path / "out" / "05_table_images_per_s.tex").read_text()
    assert "(example rows, invented)" in (tmp_path / "out" / "05_environment.md").read_text()
    assert (tmp_path / "out" / "05_report.md").read_text().startswith(
        "# Results: loading methods versus datasets (example rows, invented)")


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
    from thesislib.results import COLUMNS   # the columns bench appends (thesislib.results.append_row)

    assert tuple(COLUMNS) == (*report.RESULT_COLUMNS, *report.OPTIONAL_COLUMNS)


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
    assert "example" not in (out / "05_table_images_per_s.md").read_text()   # measured rows: no mark


def test_every_study_profile_covers_every_dataset_with_a_valid_scale():
    from thesislib.datasets import DATASETS, check_scale

    for profile in run_study_module().PROFILES.values():
        assert set(profile["scales"]) == set(DATASETS)
        assert all(check_scale(scale) for scale in profile["scales"].values())


def test_the_quick_profile_has_at_least_three_repeats():
    assert run_study_module().PROFILES["quick"]["repeats"] >= 3


def test_two_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    module = run_study_module()
    first = module.new_run_dir(tmp_path / "runs", "20260101-000000")
    second = module.new_run_dir(tmp_path / "runs", "20260101-000000")
    assert first.name == "20260101-000000" and second.name == "20260101-000000-2"
    module.Study("quick", second)
    assert (second / "notebooks").is_dir()


def test_run_study_writes_its_summaries_whole(tmp_path):
    module = run_study_module()
    study = module.Study("quick", module.new_run_dir(tmp_path, "run"))
    study.skipped = {"cupy": "needs a CUDA GPU"}
    study.steps = [("a step", "ok", 1.0, "")]
    text = module.write_summary(study, started=0.0)
    assert "| cupy | needs a CUDA GPU |" in (study.run_dir / "skipped.md").read_text()
    assert (study.run_dir / "summary.md").read_text() == text
    assert sorted(p.name for p in study.run_dir.iterdir()) == ["notebooks", "skipped.md", "summary.md"]


def test_run_study_refuses_an_unknown_loader(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_study_module().parse_args(["--loaders", "numpy,floppy"])
    assert exit_info.value.code == 2
    assert "unknown loader floppy" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- the HTML page
def stored_outputs(path, mime):
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    return [output["data"][mime] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if mime in output.get("data", {})]


def a_run(tmp_path, conclusions: bool):
    """A run folder holding the stored notebook 05 (and a small 06 with one table when ``conclusions``)."""
    import shutil

    import nbformat

    from thesislib.paths import PROJECT_ROOT

    run = tmp_path / "runs" / "20250101-000000"
    (run / "notebooks").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "notebooks" / "05_results.ipynb", run / "notebooks")
    if conclusions:
        cell = nbformat.v4.new_code_cell("table", outputs=[nbformat.v4.new_output(
            "execute_result", {"text/html": "<table><tr><td>chapter-4-cell</td></tr></table>"}, execution_count=1)])
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Conclusions chapter"), cell])
        nbformat.write(notebook, run / "notebooks" / "06_conclusions.ipynb")
    return run


@pytest.mark.parametrize("conclusions", [False, True])
def test_html_page_of_a_run_holds_every_table_and_figure_self_contained(tmp_path, conclusions):
    import re

    run = a_run(tmp_path, conclusions)
    page = report.html_page(run)
    html = page.read_text(encoding="utf-8")
    assert page == run / "report.html"
    notebook = run / "notebooks" / "05_results.ipynb"
    figures, tables = stored_outputs(notebook, "image/png"), stored_outputs(notebook, "text/html")
    assert len(figures) >= 4 and len(tables) >= 10
    for png in figures:
        assert f"data:image/png;base64,{''.join(png.split())[:200]}" in html
    for table in tables:
        cells = re.findall(r"<td>(.*?)</td>", "".join(table))
        assert cells and all(cell in html for cell in cells[:6])
    assert not re.search(r"""(src|href)=["']?https?:""", html)
    assert ("Conclusions chapter" in html and "chapter-4-cell" in html) == conclusions


def test_html_page_takes_the_newest_run_and_names_the_fix_without_one(tmp_path):
    with pytest.raises(ThesisError, match="make run"):
        report.html.newest_run(tmp_path / "runs")
    run = a_run(tmp_path, False)
    (tmp_path / "runs" / "20240101-000000" / "notebooks").mkdir(parents=True)
    assert report.html.newest_run(tmp_path / "runs") == run
    with pytest.raises(ThesisError, match="no notebooks/05_results.ipynb"):
        report.html_page(tmp_path / "runs" / "20240101-000000")
