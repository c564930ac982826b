"""The results file: its columns, defined once, the check of a path before any training, and the locked
append of one row.

One row per repeat goes to a ``.csv`` (appended in place) or a ``.parquet`` (rewritten atomically) file.
Every append holds an exclusive ``fcntl.flock`` on a lock file beside the results (``.<name>.lock``), so
benches writing one file at once lose no row. A CSV whose last line lacks its newline (a writer killed
mid-line) gets one before the next row; a file of another column set is never rewritten: only an older
thesislib file (the contract's columns, a subset of :data:`COLUMNS`) is extended, its cells kept as written.
"""

import csv
import fcntl
import io
import math
import os
from contextlib import contextmanager
from pathlib import Path

from thesislib.atomic import write_atomic
from thesislib.errors import ThesisError
from thesislib.paths import project_path

CONTRACT_COLUMNS = (
    "run_id", "started_at", "git_commit", "host", "loader", "store", "dataset", "scale", "precision",
    "device", "model", "epochs", "batch_size", "num_workers", "seed", "repeat", "total_train_s",
    "epoch_s_mean", "data_s_mean", "stall_pct", "images_per_s", "peak_ram_mb", "peak_vram_mb",
    "gpu_util_pct", "cpu_util_pct", "train_loss", "val_acc",
)
# Added by later versions (page cache, scale-out, remote cache copy); a file without them is an older one.
EXTRA_COLUMNS = ("cache_state", "cached_pct", "thesislib_version", "world_size", "rank", "cache_copy_s",
                 "cache_copy_bytes", "store_location", "decode")
COLUMNS = CONTRACT_COLUMNS + EXTRA_COLUMNS
SUFFIXES = (".csv", ".parquet")


# ------------------------------------------------------------------------------------------- checking
def check_results_path(results) -> Path:
    """The absolute path of ``results``, checked before any training: a .csv/.parquet name, a writable
    folder (created if missing), and an existing file that is a results file this version can extend.
    Anything else is a ThesisError naming the file and the fix."""
    path = project_path(results)
    if path.suffix not in SUFFIXES:
        raise ThesisError(f"--results {results}: the file must end in .csv or .parquet")
    if path.is_dir():
        raise ThesisError(f"--results {path} is a folder: name a file in it, e.g. {path / 'results.csv'}")
    make_folder(path.parent)
    if path.exists():
        check_existing(path)
    return path


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ThesisError(f"cannot create the results folder {folder} ({exc.strerror}): choose --results "
                          "in a folder you can write") from exc
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ThesisError(f"results folder {folder} is not writable: choose --results in a folder you can "
                          "write")


def check_existing(path: Path) -> None:
    if not path.is_file():
        raise ThesisError(f"--results {path} is not a regular file: choose another file name")
    if not os.access(path, os.R_OK | os.W_OK):
        raise ThesisError(f"results file {path} is read-only: make it writable or choose another --results")
    if path.stat().st_size:
        check_columns(path, existing_columns(path))


def existing_columns(path: Path) -> list:
    """The column names of an existing, non-empty results file; a ThesisError if it cannot be parsed."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        return list(read_csv_text(path).columns)
    except ThesisError:
        raise
    except Exception as exc:  # pyarrow's and pandas' parser errors: the file is not what its name says
        raise ThesisError(f"results file {path} cannot be read as {path.suffix[1:].upper()} "
                          f"({type(exc).__name__}): move it away or choose another --results") from exc


def read_csv_text(path: Path):
    """A CSV results file with every cell as written (text), so a rewrite changes no cell."""
    import pandas as pd

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ThesisError(f"results file {path} is not text (byte {exc.start} is not UTF-8): move it away "
                          "or choose another --results") from exc
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def check_columns(path: Path, columns: list) -> None:
    """Refuse a file whose columns are not this version's or an older thesislib's (a subset of them)."""
    if list(columns) == list(COLUMNS):
        return
    foreign = [column for column in columns if column not in COLUMNS]
    missing = [column for column in CONTRACT_COLUMNS if column not in columns]
    if foreign or missing:
        what = f"unknown column(s) {', '.join(foreign[:5])}" if foreign else \
            f"no column(s) {', '.join(missing[:5])}"
        raise ThesisError(f"results file {path} is not a thesislib results file ({what}): it is left as it "
                          "is; choose another --results")


# ------------------------------------------------------------------------------------------- appending
@contextmanager
def locked(path: Path):
    """An exclusive lock for ``path``'s writers: ``flock`` on ``.<name>.lock`` beside it."""
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_row(results, row: dict) -> None:
    """Append one row (missing columns empty) to a .csv (in place) or .parquet (rewritten atomically)
    results file, under the file's lock."""
    path = Path(results)
    with locked(path):
        if path.is_file() and path.stat().st_size:
            check_columns(path, existing_columns(path))
        if path.suffix == ".parquet":
            rewrite_parquet(path, row)
        elif not path.is_file() or path.stat().st_size == 0 or csv_header(path) == list(COLUMNS):
            append_csv_row(path, row)
        else:
            rewrite_csv(path, row)


def cell(value) -> str:
    """A CSV cell: NaN and None empty, floats in full precision."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def csv_lines(rows) -> str:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


def csv_header(path: Path):
    with open(path, newline="", encoding="utf-8") as file:
        return next(csv.reader(file), None)


def ends_without_newline(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) not in (b"\n", b"\r")


def append_csv_row(path: Path, row: dict) -> None:
    """The row (after the header, for a new file), its last line's newline restored first if lost."""
    lines = [] if path.is_file() and path.stat().st_size else [list(COLUMNS)]
    text = ("\r\n" if ends_without_newline(path) else "") + csv_lines(
        [*lines, [cell(row.get(column)) for column in COLUMNS]])
    append_line(path, text)


def append_line(path: Path, text: str) -> None:
    """Append ``text`` and flush it to the disk before returning."""
    with open(path, "a", encoding="utf-8", newline="") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def rewrite_csv(path: Path, row: dict) -> None:
    """An older thesislib CSV (a subset of the columns) rewritten with every column: old cells as written,
    new columns empty, then ``row``."""
    old = read_csv_text(path).reindex(columns=list(COLUMNS), fill_value="")
    rows = [list(COLUMNS), *old.itertuples(index=False, name=None), [cell(row.get(c)) for c in COLUMNS]]
    write_atomic(path, lambda tmp: Path(tmp).write_text(csv_lines(rows), encoding="utf-8", newline=""))


def rewrite_parquet(path: Path, row: dict) -> None:
    """Older rows plus ``row`` into a temporary file renamed over ``path``."""
    import pandas as pd

    frame = pd.DataFrame([{column: row.get(column) for column in COLUMNS}], columns=list(COLUMNS))
    if path.is_file() and path.stat().st_size:
        old = pd.read_parquet(path)
        frame = pd.concat([old.reindex(columns=list(COLUMNS)), frame], ignore_index=True)
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))



def env_path(results) -> Path:
    """``<results>.env.jsonl``: the sidecar of a results file, one JSON line per protocol run (its
    environment)."""
    path = Path(results)
    return path.with_name(path.name + ".env.jsonl")

# ------------------------------------------------------------------------------- rows of several ranks
def total(column):
    """The sum of a column's values; NaN if all are NaN (pandas' plain sum would give 0)."""
    return column.sum(min_count=1)


# How one repeat's rows (one per rank) combine into one: the protocol ends when the slowest rank ends,
# throughput and memory add up over the ranks' processes, the longest data wait (and stall) is the
# straggler's; the other columns (the run's settings) are the same on every rank: the first is kept.
# What identifies one repeat of one protocol run (its ranks' rows share these; host may differ between
# servers, so it is not a key).
RANK_KEYS = ("run_id", "repeat", "loader", "store", "dataset", "cache_state", "world_size", "source")
RANK_AGGREGATES = {
    "total_train_s": "max", "epoch_s_mean": "max", "data_s_mean": "max", "stall_pct": "max",
    "images_per_s": total, "peak_ram_mb": total, "peak_vram_mb": total, "gpu_util_pct": "mean",
    "cpu_util_pct": total, "train_loss": "mean", "val_acc": "mean", "cached_pct": "mean",
}


def aggregate_ranks(rows) -> dict:
    """One repeat's rows (dicts, one per rank) combined into one row (see :data:`RANK_AGGREGATES`), with
    ``data_s_min`` (the shortest rank's data wait) beside ``data_s_mean`` (the longest), and no ``rank``."""
    import pandas as pd

    return aggregate_rank_frame(pd.DataFrame(list(rows))).iloc[0].to_dict()


def aggregate_rank_frame(frame):
    """A results frame with one row per repeat of a protocol run: the rows of a run's ranks (world_size > 1)
    combined as :func:`aggregate_ranks` does; rows of single-process runs pass unchanged. ``data_s_min``
    (the shortest rank's data wait) is added beside ``data_s_mean``."""
    import pandas as pd

    frame = frame.assign(rank=frame.get("rank", 0), world_size=frame.get("world_size", 1))
    frame = frame.fillna({"rank": 0, "world_size": 1})  # rows written before the columns existed
    frame.insert(frame.columns.get_loc("data_s_mean") + 1, "data_s_min", frame["data_s_mean"])
    single, ranked = frame[frame["world_size"] <= 1], frame[frame["world_size"] > 1]
    if ranked.empty:
        return frame.drop(columns="rank").reset_index(drop=True)
    keys = [column for column in RANK_KEYS if column in ranked.columns]
    how = {column: RANK_AGGREGATES.get(column, "first") for column in ranked.columns
           if column not in keys and column != "rank"}
    how["data_s_min"] = "min"
    combined = ranked.groupby(keys, sort=False, dropna=False).agg(how).reset_index()
    return pd.concat([single.drop(columns="rank"), combined[[c for c in frame.columns if c != "rank"]]],
                     ignore_index=True)
