"""The results file: one definition of the columns, a locked append that loses no row under concurrent
writers, a repaired line end, a foreign file refused, and a bad path found before any training."""

import multiprocessing
import os

import pandas as pd
import pytest

from thesislib import results
from thesislib.errors import ThesisError
from thesislib.results import COLUMNS, CONTRACT_COLUMNS, append_row, check_results_path


def row(repeat=0, **changes):
    values = {column: "" for column in COLUMNS}
    values.update(run_id="r1", loader="numpy", store="npy-uint8", dataset="cifar10", scale=0.02, epochs=1,
                  batch_size=64, num_workers=0, seed=0, repeat=repeat, images_per_s=1234.5, world_size=1,
                  rank=0, cache_copy_s=float("nan"))
    return {**values, **changes}


def test_columns_are_the_contracts_then_the_extra_ones_once_each():
    assert COLUMNS[:27] == CONTRACT_COLUMNS and len(set(COLUMNS)) == len(COLUMNS)
    assert {"world_size", "rank", "cache_copy_s", "cache_copy_bytes", "cache_state"} <= set(COLUMNS[27:])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_rows_are_appended_with_every_column(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    append_row(path, row(0))
    append_row(path, row(1))
    frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert list(frame.columns) == list(COLUMNS) and frame["repeat"].tolist() == [0, 1]
    assert frame["batch_size"].dtype.kind == "i"


def _append_many(path, first, count):
    for repeat in range(first, first + count):
        append_row(path, row(repeat))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_concurrent_writers_lose_no_row(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(path, 100 * i, 12)) for i in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert sorted(frame["repeat"]) == sorted(100 * i + k for i in range(4) for k in range(12))


def test_a_csv_whose_last_line_lacks_its_newline_is_repaired_not_glued(tmp_path):
    path = tmp_path / "results.csv"
    append_row(path, row(0))
    path.write_bytes(path.read_bytes().rstrip(b"\r\n"))
    append_row(path, row(1))
    frame = pd.read_csv(path)
    assert frame["repeat"].tolist() == [0, 1] and frame["loader"].tolist() == ["numpy", "numpy"]


def test_a_foreign_csv_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("name,count\nalpha,1\nbeta,2\n")
    before = path.read_bytes()
    with pytest.raises(ThesisError, match="not a thesislib results file"):
        check_results_path(path)
    with pytest.raises(ThesisError, match="not a thesislib results file"):
        append_row(path, row(0))
    assert path.read_bytes() == before


def test_an_older_thesislib_csv_is_extended_without_turning_integers_into_floats(tmp_path):
    path = tmp_path / "results.csv"
    old = pd.DataFrame([{column: row(0)[column] for column in CONTRACT_COLUMNS}])
    old["peak_vram_mb"] = None
    old.to_csv(path, index=False)
    append_row(path, row(1))
    text = path.read_text()
    assert list(pd.read_csv(path).columns) == list(COLUMNS)
    assert ",64," in text and "64.0" not in text and len(pd.read_csv(path)) == 2


def test_a_folder_as_results_is_refused(tmp_path):
    (tmp_path / "r.csv").mkdir()
    with pytest.raises(ThesisError, match="is a folder"):
        check_results_path(tmp_path / "r.csv")


@pytest.mark.parametrize("suffix,content", [(".csv", b"\x89PNG\r\n\x1a\n\x00\xff\xfe"),
                                            (".csv", b'a,"b\n1,2,3,4\n5'),
                                            (".parquet", b"not parquet at all")])
def test_binary_or_unparsable_results_are_refused(tmp_path, suffix, content):
    path = tmp_path / f"r{suffix}"
    path.write_bytes(content)
    with pytest.raises(ThesisError, match=str(path)):
        check_results_path(path)
    assert path.read_bytes() == content


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ThesisError, match="not writable"):
            check_results_path(folder / "r.csv")
    finally:
        folder.chmod(0o700)


def test_a_results_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ThesisError, match="cannot create the results folder"):
        check_results_path(tmp_path / "file" / "r.csv")


def test_a_read_only_results_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    append_row(path, row(0))
    monkeypatch.setattr(results.os, "access", lambda p, mode: str(p) != str(path))
    with pytest.raises(ThesisError, match="read-only"):
        check_results_path(path)


def test_a_bad_results_file_stops_bench_before_the_first_repeat_trains(prepared_cifar10, tmp_path, capsys,
                                                                       monkeypatch):
    from thesislib import bench
    from thesislib.cli import main

    trained = []
    monkeypatch.setattr(bench, "run_once", lambda *a, **k: trained.append(1))
    (tmp_path / "r.csv").mkdir()
    status = main(["bench", "--loader", "numpy", "--dataset", "cifar10", "--scale", "0.005", "--model", "none",
                   "--data-dir", str(prepared_cifar10), "--results", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "is a folder" in err and not trained
