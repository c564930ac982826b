"""thesislib.report.peers: the summary, goals, table and figure of a peers run, from a small CSV written here
(correctness only; the figures themselves come from benchmarks/peers.py)."""

import math

import pandas as pd
import pytest

from thesislib.errors import ThesisError
from thesislib.report import peers

# (group, case, loader, store, pixels, workers, rates of the rounds, skipped)
CASES = [
    ("limit", "random gather into a buffer", "", "", "raw", 0, [1000, 1200, 1100], ""),
    ("thesislib", "numpy", "numpy", "npy-uint8", "raw", 0, [600, 660, 630], ""),
    ("thesislib", "numpy", "numpy", "npy-uint8", "raw", 2, [300, 320, 310], ""),
    ("thesislib", "hdf5", "hdf5", "hdf5", "raw", 0, [400, 420, 410], ""),
    ("thesislib", "zarr", "zarr", "zarr", "raw", 0, [400, 420, 410], ""),
    ("thesislib", "zarr", "zarr", "zarr", "raw", 2, [390, 430, 400], ""),  # slower median, faster in round 2
    ("thesislib", "lmdb", "lmdb", "lmdb", "raw", 0, [400, 420, 410], ""),
    ("thesislib", "lmdb", "lmdb", "lmdb", "raw", 2, [100, 430, 90], ""),  # faster in round 2, far slower else
    ("thesislib", "files", "files", "files-jpeg", "jpeg", 0, [44_000, 46_000, 45_000], ""),
    ("thesislib", "files", "files", "files-jpeg", "jpeg", 2, [50_000, 50_000, 50_000], ""),
    ("thesislib", "torchvision", "torchvision", "files-jpeg", "jpeg", 0, [10, 10, 10], ""),
    ("thesislib", "cupy", "cupy", "npy-uint8", "raw", 0, [], "needs a CUDA GPU"),
    ("baseline", "memmap, per sample", "", "npy-uint8", "raw", 0, [100, 120, 110], ""),
    ("baseline", "memmap, per sample", "", "npy-uint8", "raw", 2, [100, 100, 100], ""),
    ("baseline", "h5py, per sample", "", "hdf5", "raw", 0, [90, 100, 80], ""),
    ("baseline", "ImageFolder + Pillow, per file", "", "files-jpeg", "jpeg", 0, [10, 10, 10], ""),
    ("peer", "FFCV raw .beton", "", "", "raw", 0, [300, 300, 300], ""),
    ("peer", "FFCV raw .beton", "", "", "raw", 2, [400, 400, 400], ""),
    ("peer", "FFCV JPEG .beton", "", "", "jpeg", 0, [90_000, 90_000, 90_000], ""),
]


def rounds_rows(dataset="cifar10"):
    rows = []
    for group, case, loader, store, pixels, workers, rates, skipped in CASES:
        base = {"dataset": dataset, "scale": 1.0, "group": group, "case": case, "loader": loader, "store": store,
                "pixels": pixels, "workers": workers, "epoch_batches": 196, "note": "", "skipped": skipped}
        rows += [{**base, "round": n + 1, "images": rate * 2, "seconds": 2.0, "img_s": rate, "batches": 196}
                 for n, rate in enumerate(rates)] or [base]
    return rows


@pytest.fixture
def run(tmp_path):
    peers.write_rounds(rounds_rows(), peers.rounds_path(tmp_path, "cifar10"))
    peers.write_rounds(rounds_rows("tinyimagenet"), peers.rounds_path(tmp_path, "tinyimagenet"))
    return tmp_path


def goal(table, name, workers):
    hit = table[(table["goal"] == name) & (table["workers"] == workers)]
    assert len(hit) == 1, (name, workers)
    return hit.iloc[0]


def test_summary_gives_median_and_range_per_case_and_blank_for_a_skipped_one(run):
    summary = peers.summarize(peers.read_rounds(peers.rounds_path(run, "cifar10")))
    numpy0 = summary[(summary["loader"] == "numpy") & (summary["workers"] == 0)].iloc[0]
    assert (numpy0["median_img_s"], numpy0["min_img_s"], numpy0["max_img_s"], numpy0["rounds"]) == (630, 600, 660, 3)
    cupy = summary[summary["loader"] == "cupy"].iloc[0]
    assert math.isnan(cupy["median_img_s"]) and cupy["skipped"] == "needs a CUDA GPU"
    assert list(summary["group"].unique()) == ["limit", "thesislib", "baseline", "peer"]  # the run's order


def test_goals_divide_medians_of_the_same_worker_count_and_each_loader_by_its_own_stores_baseline(run):
    summary = peers.summarize(peers.read_rounds(peers.rounds_path(run, "cifar10")))
    table = peers.goals(summary, "cifar10")
    assert goal(table, "numpy >= 1.5x FFCV raw", 0)["ratio"] == pytest.approx(2.1)
    assert goal(table, "numpy >= 1.5x FFCV raw", 0)["verdict"] == "met"
    assert goal(table, "numpy >= 1.5x FFCV raw", 2)["verdict"] == "not met"
    assert goal(table, "numpy >= 60% of the random-gather limit", 0)["ratio"] == pytest.approx(630 / 1100)
    assert goal(table, "hdf5 >= 50% of numpy", 0)["ratio"] == pytest.approx(410 / 630)
    assert goal(table, "numpy [npy-uint8] >= 5x the per-sample baseline on its store", 0)["ratio"] == \
        pytest.approx(630 / 110)
    assert goal(table, "hdf5 [hdf5] >= 5x the per-sample baseline on its store", 0)["ratio"] == pytest.approx(410 / 90)
    assert goal(table, "torchvision [files-jpeg] >= 5x the per-sample baseline on its store", 0)["verdict"] == \
        "the per-sample baseline by design (contract)"
    jpeg = goal(table, "best thesislib JPEG path >= FFCV JPEG", 0)
    assert jpeg["ratio"] == pytest.approx(0.5) and "files [files-jpeg]" in jpeg["compared"]
    assert goal(table, "numpy [npy-uint8]: 2 workers not slower than 0", 2)["verdict"] == \
        "not met (slower in all 3 rounds)"
    assert goal(table, "files [files-jpeg]: 2 workers not slower than 0", 2)["verdict"] == "met"
    assert goal(table, "cupy [npy-uint8] >= 5x the per-sample baseline on its store", 0)["verdict"].startswith("n/a")


def test_today_goals_divide_by_the_issues_fixed_figures_for_cifar10_only(run):
    cifar = peers.goals(peers.summarize(peers.read_rounds(peers.rounds_path(run, "cifar10"))), "cifar10")
    files0 = goal(cifar, "files [files-jpeg] >= 4x the issue's 'today'", 0)
    assert files0["ratio"] == pytest.approx(45_000 / 11_000) and files0["verdict"] == "met"
    assert "not measured in this run" in files0["compared"]
    tiny = peers.goals(peers.summarize(peers.read_rounds(peers.rounds_path(run, "tinyimagenet"))), "tinyimagenet")
    assert goal(tiny, "files [files-jpeg] >= 4x the issue's 'today'", 0)["verdict"].startswith("n/a: the issue gives")
    lines = peers.goal_lines(cifar)
    assert any(line.startswith("numpy >= 1.5x FFCV raw, 0 workers: 2.10x (target 1.5x) met") for line in lines)


def test_a_note_only_the_two_worker_row_has_is_shown_with_its_worker_count(tmp_path):
    rows = rounds_rows()
    for row in rows:
        if row["loader"] == "numpy":
            row["note"] = "shared" if row["workers"] == 0 else "shared; read in the loop's thread"
    peers.write_rounds(rows, peers.rounds_path(tmp_path, "cifar10"))
    table = peers.display_table(peers.summarize(peers.read_rounds(peers.rounds_path(tmp_path, "cifar10"))))
    assert table.set_index("case").loc["thesislib: numpy [npy-uint8]", "note"] == \
        "shared; 2 workers: read in the loop's thread"


def test_display_table_rounds_to_three_digits_and_names_the_skip_reason(run):
    summary = peers.summarize(peers.read_rounds(peers.rounds_path(run, "cifar10")))
    table = peers.display_table(summary).set_index("case")
    assert table.loc["thesislib: files [files-jpeg]", "0 workers"] == "45,000 (44,000..46,000)"
    assert table.loc["thesislib: cupy [npy-uint8]", "0 workers"] == "skipped: needs a CUDA GPU"
    assert table.loc["thesislib: hdf5 [hdf5]", "2 workers"] == ""
    assert peers.format_rate(123_456.7) == "123,000" and peers.format_rate(12.345) == "12.3"


def test_run_folder_lists_data_sets_in_the_contracts_order_and_reads_its_environment(run):
    assert peers.datasets_in(run) == ["cifar10", "tinyimagenet"]
    assert peers.datasets_in(run / "absent") == []
    peers.write_environment({"machine": "m-2core", "versions": {"torch": "2"}}, peers.env_path(run, "cifar10"))
    table = peers.environment_table(peers.read_environment(peers.env_path(run, "cifar10")))
    assert table.values.tolist() == [["machine", "m-2core"], ["torch", "2"]]
    assert peers.read_environment(run / "none.json") == {}


def test_reading_a_missing_or_foreign_csv_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(ThesisError, match="no peers rounds at .*benchmarks/peers.py"):
        peers.read_rounds(tmp_path / "cifar10.csv")
    pd.DataFrame({"case": ["x"]}).to_csv(tmp_path / "cifar10.csv", index=False)
    with pytest.raises(ThesisError, match="lacks the column.*run it again"):
        peers.read_rounds(tmp_path / "cifar10.csv")


def test_figure_has_one_bar_per_measured_case_and_saves_as_png(run, tmp_path):
    summary = peers.summarize(peers.read_rounds(peers.rounds_path(run, "cifar10")))
    figure = peers.peers_figure(summary, "test")
    assert len(figure.axes[0].patches) == summary["median_img_s"].notna().sum()
    path = peers.save_figure(figure, tmp_path / "out.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_slower_median_is_not_a_slower_loader_when_the_paired_rounds_disagree(run):
    table = peers.goals(peers.summarize(peers.read_rounds(peers.rounds_path(run, "cifar10"))), "cifar10")
    zarr = goal(table, "zarr [zarr]: 2 workers not slower than 0", 2)
    assert zarr["ratio"] == pytest.approx(400 / 410)
    assert zarr["verdict"] == "not measurably slower (slower in 2 of 3 rounds)"
    lmdb = goal(table, "lmdb [lmdb]: 2 workers not slower than 0", 2)
    assert lmdb["verdict"] == "not met (median below every round of fewer workers; slower in 2 of 3)"
