"""Reading results files strictly, and the order of methods, datasets and cache states."""

from pathlib import Path

import pandas as pd

from thesislib.datasets import DATASETS
from thesislib.errors import ThesisError
from thesislib.paths import project_path
from thesislib.results import aggregate_rank_frame
from thesislib.report.columns import RESULT_COLUMNS, OPTIONAL_COLUMNS, TEXT_COLUMNS, LOADER_ORDER, CACHE_ORDER, CONDITION_COLUMNS


def parse_paths(results) -> list:
    """Results paths from a list, or from one string of comma-separated paths (the notebook parameter)."""
    items = results.split(",") if isinstance(results, str) else list(results)
    paths = [project_path(str(item).strip()) for item in items if str(item).strip()]
    if not paths:
        raise ThesisError("no results file given: pass --results FILE (a .csv or .parquet from bench)")
    return paths


def read_results(results, allow_mixed: bool = False) -> pd.DataFrame:
    """All rows of the results file(s), checked, with a ``method`` label per row (loader and store)."""
    frames = [_read_one(path) for path in parse_paths(results)]
    frame = pd.concat(frames, ignore_index=True)
    check_versions(frame, allow_mixed)
    return add_labels(aggregate_rank_frame(frame))  # one row per repeat over its ranks


def _read_one(path: Path) -> pd.DataFrame:
    frame = _read_table(path)
    missing = [column for column in RESULT_COLUMNS if column not in frame.columns]
    if missing:
        raise ThesisError(f"results file {path} lacks column(s) {', '.join(missing)}: it was not written "
                          "by this version of `python -m thesislib bench`; rerun the benchmark into a new file")
    for column, default in OPTIONAL_COLUMNS.items():
        if column not in frame.columns:
            frame[column] = default
        elif isinstance(default, str) and default:  # rows written before the column existed: empty cells
            frame[column] = frame[column].fillna(default)
    frame["store"] = frame["store"].fillna("default store")
    frame["source"] = str(path)
    return _numeric(frame, path)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ThesisError(f"results file {path} not found: run `python -m thesislib bench --results {path}` "
                          "(or `make run`) first")
    if path.suffix not in (".csv", ".parquet"):
        raise ThesisError(f"results file {path} must end in .csv or .parquet")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={column: "str" for column in TEXT_COLUMNS})
    except pd.errors.EmptyDataError as exc:
        raise ThesisError(f"results file {path} is empty: run the benchmark into it first") from exc
    except Exception as exc:  # a parser's own error type tells the user little
        raise ThesisError(f"results file {path} cannot be read ({exc}): is it a results file?") from exc
    if frame.empty:
        raise ThesisError(f"results file {path} has a header but no rows: run the benchmark into it first")
    return frame


def _numeric(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    numeric = [*RESULT_COLUMNS[RESULT_COLUMNS.index("total_train_s"):], "cached_pct",
               "scale", "epochs", "batch_size", "num_workers", "seed", "repeat"]
    for column in numeric:
        try:
            frame[column] = pd.to_numeric(frame[column]).astype(float)
        except (ValueError, TypeError) as exc:
            raise ThesisError(f"results file {path}: column {column} holds text where numbers belong "
                              f"({exc}); the file is damaged, rerun the benchmark") from exc
    return frame


def check_versions(frame: pd.DataFrame, allow_mixed: bool = False) -> None:
    """Raise unless every row comes from one thesislib version and one git commit (or ``allow_mixed``)."""
    for column, what in (("thesislib_version", "versions of thesislib"), ("git_commit", "git commits")):
        found = frame.dropna(subset=[column]).groupby(column)["source"].unique()
        if len(found) > 1 and not allow_mixed:
            where = "; ".join(f"{value} in {', '.join(Path(s).name for s in sources)}"
                              for value, sources in found.items())
            raise ThesisError(f"results mix {len(found)} {what} ({where}): numbers from different code are "
                              "not comparable; rerun them with one version, or pass --allow-mixed "
                              "(allow_mixed=True) to report them together")


def add_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``method``: "loader (store)", plus any setting that differs within one table cell."""
    frame = frame.copy()
    frame["method"] = frame["loader"].astype(str) + " (" + frame["store"].astype(str) + ")"
    cell = ["method", "dataset", "cache_state"]
    for column in CONDITION_COLUMNS:
        if (frame.groupby(cell)[column].nunique(dropna=False) > 1).any():
            frame["method"] += " " + column + "=" + frame[column].map(_short)
    return frame


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def method_order(frame: pd.DataFrame) -> list:
    """Methods in the contract's loader order, then by store."""
    rank = {name: i for i, name in enumerate(LOADER_ORDER)}
    keys = frame[["method", "loader"]].drop_duplicates()
    keys = keys.assign(rank=keys["loader"].map(rank).fillna(len(rank)))
    return list(keys.sort_values(["rank", "method"])["method"])


def dataset_order(frame: pd.DataFrame) -> list:
    known = [name for name in DATASETS if name in set(frame["dataset"])]
    return known + sorted(set(frame["dataset"]) - set(known))


def cache_states(frame: pd.DataFrame) -> list:
    present = set(frame["cache_state"])
    return [state for state in CACHE_ORDER if state in present] + sorted(present - set(CACHE_ORDER))
