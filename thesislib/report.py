"""Results -> the thesis's chapter 3: "loading methods versus datasets" as tables, figures and a reading.

Each metric of the protocol becomes one table, loading method (rows) x dataset (columns), each cell the
mean and the half-width of a Student-t confidence interval (95% by default) over the repeats; one repeat
gives ``n/a``. When the results hold cold-cache runs (``cache_state == "cold"``, from ``bench --cold``)
the columns split into warm and cold side by side. Tables are written as Markdown and LaTeX, figures as
PNG and PDF, all named ``05_*`` so that they sit beside the other chapters' files in ``figures/``.

Results files are read strictly: a missing file, an empty one, a missing column, or rows from more than
one version of thesislib (or git commit) raise a :class:`~thesislib.errors.ThesisError` saying what to do.
Mixed versions can be reported together on purpose with ``allow_mixed=True``.

The environment of every run (the thesis's section 2.6) comes from the sidecar ``<results>.env.jsonl``
that ``bench`` appends to; without it the table falls back to what the result rows say.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from thesislib.atomic import write_atomic, write_text
from thesislib.datasets import DATASETS
from thesislib.envinfo import LABELS as ENV_LABELS
from thesislib.errors import ThesisError
from thesislib.paths import project_path

RESULT_COLUMNS = (
    "run_id", "started_at", "git_commit", "host", "loader", "store", "dataset", "scale", "precision",
    "device", "model", "epochs", "batch_size", "num_workers", "seed", "repeat", "total_train_s",
    "epoch_s_mean", "data_s_mean", "stall_pct", "images_per_s", "peak_ram_mb", "peak_vram_mb",
    "gpu_util_pct", "cpu_util_pct", "train_loss", "val_acc",
)
# Written by newer versions of bench; an older file without them reads as warm runs of unknown version.
OPTIONAL_COLUMNS = {"cache_state": "warm", "cached_pct": np.nan, "thesislib_version": None, "world_size": 1, "rank": 0}
TEXT_COLUMNS = ("run_id", "started_at", "git_commit", "host", "loader", "store", "dataset", "precision",
                "device", "model", "cache_state", "thesislib_version")
LOADER_ORDER = ("files", "numpy", "cupy", "hdf5", "zarr", "dali", "memory", "torchvision")
CACHE_ORDER = ("warm", "cold")
# Settings that, when they differ within one table cell, are added to the row label to keep cells apart
# (rows of two machines, or two models, are never pooled into one mean).
CONDITION_COLUMNS = ("host", "model", "device", "precision", "epochs", "batch_size", "num_workers", "scale")


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    unit: str
    better: str = ""   # "higher", "lower" or "" (neither)

    @property
    def label(self) -> str:
        return f"{self.title} ({self.unit})" if self.unit else self.title


METRICS = (
    Metric("images_per_s", "throughput", "images/s", "higher"),
    Metric("epoch_s_mean", "epoch time", "s", "lower"),
    Metric("data_s_mean", "data wait per epoch", "s", "lower"),
    Metric("stall_pct", "stall", "% of epoch", "lower"),
    Metric("total_train_s", "training time", "s", "lower"),
    Metric("peak_ram_mb", "peak RAM", "MiB", "lower"),     # the column names say mb; the profiler counts 2**20
    Metric("peak_vram_mb", "peak VRAM", "MiB", "lower"),
    Metric("gpu_util_pct", "GPU utilisation", "%"),
    Metric("cpu_util_pct", "CPU utilisation", "% of all cores"),
    Metric("train_loss", "training loss", ""),
    Metric("val_acc", "validation accuracy", ""),
    Metric("cached_pct", "store in page cache at start", "%"),
)
METRIC_BY_COLUMN = {metric.column: metric for metric in METRICS}

# Sidecar keys that change from run to run on one machine; they would split one machine into many.
VOLATILE_ENV_KEYS = ("run_id", "disk_free_gb")


# ---------------------------------------------------------------------------------------------- reading
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
    return add_labels(frame)


def _read_one(path: Path) -> pd.DataFrame:
    frame = _read_table(path)
    missing = [column for column in RESULT_COLUMNS if column not in frame.columns]
    if missing:
        raise ThesisError(f"results file {path} lacks column(s) {', '.join(missing)}: it was not written "
                          "by this version of `python -m thesislib bench`; rerun the benchmark into a new file")
    for column, default in OPTIONAL_COLUMNS.items():
        if column not in frame.columns:
            frame[column] = default
    frame["cache_state"] = frame["cache_state"].fillna("warm")
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


# ------------------------------------------------------------------------------------------- statistics
def t_halfwidth(values, confidence: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean; NaN for fewer than two values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return math.nan
    sem = values.std(ddof=1) / math.sqrt(len(values))
    return float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * sem)


def t_interval(values, confidence: float = 0.95) -> tuple:
    """(low, high) of the Student-t confidence interval of the mean (seaborn's ``errorbar`` callable)."""
    mean = float(np.nanmean(values)) if np.any(~np.isnan(np.asarray(values, float))) else math.nan
    half = t_halfwidth(values, confidence)
    return (mean - half, mean + half) if not math.isnan(half) else (mean, mean)


def summarize(frame: pd.DataFrame, column: str, confidence: float = 0.95) -> pd.DataFrame:
    """One row per method x dataset x cache state: n (repeats with a value), mean and CI half-width."""
    groups = frame.groupby(["method", "dataset", "cache_state"], sort=False)[column]
    summary = groups.agg(n="count", mean="mean").reset_index()
    summary["half"] = groups.agg(lambda v: t_halfwidth(v, confidence)).to_numpy()
    return summary


def _decimals(value: float) -> int:
    """Decimals that show three significant digits (none above 100, at most four)."""
    if not np.isfinite(value) or value == 0:
        return 1
    return int(min(4, max(0, 2 - math.floor(math.log10(abs(value))))))


def format_cell(mean: float, half: float, pm: str = "±") -> str:
    """``mean ± half`` rounded alike; ``n/a`` for a missing mean or a single repeat's interval."""
    if not np.isfinite(mean):
        return "n/a"
    places = _decimals(mean)
    spread = f"{half:.{places}f}" if np.isfinite(half) else "n/a"
    return f"{mean:.{places}f} {pm} {spread}"


def metric_table(frame: pd.DataFrame, column: str, confidence: float = 0.95, pm: str = "±") -> pd.DataFrame:
    """The chapter-3 table of one metric: methods (rows) x datasets (columns; split warm/cold if both)."""
    summary = summarize(frame, column, confidence)
    states = cache_states(frame)
    summary["column"] = summary["dataset"] + (" " + summary["cache_state"] if len(states) > 1 else "")
    summary["cell"] = [format_cell(m, h, pm) for m, h in zip(summary["mean"], summary["half"])]
    table = summary.pivot(index="method", columns="column", values="cell")
    columns = [f"{d} {s}" if len(states) > 1 else d for d in dataset_order(frame) for s in states]
    table = table.reindex(index=method_order(frame), columns=[c for c in columns if c in table.columns])
    table = table.fillna("–")
    table.index.name, table.columns.name = "method", None
    return table


def table_caption(frame: pd.DataFrame, column: str, confidence: float = 0.95, note: str = "") -> str:
    """The caption of a metric's table; ``note`` follows the metric's name (e.g. " (example rows)")."""
    label = METRIC_BY_COLUMN[column].label + note
    counts = summarize(frame, column, confidence)["n"]
    if counts.max() == 0:
        return f"{label}: not measured in these runs (n/a), e.g. GPU figures of CPU-only runs."
    repeats = f"{counts.max()}" if counts.min() == counts.max() else f"{counts.min()}–{counts.max()}"
    return (f"{label}: mean ± half-width of the {confidence:.0%} Student-t confidence interval over "
            f"{repeats} repeats (n/a: one repeat or not measured; –: not run).{few_repeats(counts, confidence)}")


SMALL_DF = 4   # up to this many degrees of freedom an interval is flagged as wide (t(0.975, 4) = 2.78)


def few_repeats(counts, confidence: float = 0.95) -> str:
    """A sentence warning that intervals are wide when the fewest repeats behind one give df <= SMALL_DF."""
    counts = pd.Series(counts)
    counts = counts[counts >= 2]
    if counts.empty or counts.min() - 1 > SMALL_DF:
        return ""
    n = int(counts.min())
    t = stats.t.ppf((1 + confidence) / 2, n - 1)
    return (f" Few repeats: with n = {n} (df = {n - 1}) a half-width is {t:.1f} standard errors, so the "
            "intervals are wide.")


def metrics_present(frame: pd.DataFrame) -> list:
    """The metrics worth a table: the protocol's, and the page-cache share when bench recorded it."""
    return [m for m in METRICS if m.column != "cached_pct" or frame["cached_pct"].notna().any()]


# ---------------------------------------------------------------------------------------------- writing
# One pass (str.translate), so that the braces of \textbackslash{} are not escaped again.
_LATEX_SPECIAL = str.maketrans({"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                **{char: "\\" + char for char in "&%$#_{}"}})


def _latex_escape(text: str) -> str:
    return str(text).translate(_LATEX_SPECIAL)


def to_latex(table: pd.DataFrame, caption: str, label: str, align: str = "r") -> str:
    """A booktabs ``table`` environment; ``±`` becomes ``$\\pm$`` and names are escaped."""
    latex = table.rename(index=_latex_escape, columns=_latex_escape)
    latex = latex.map(lambda cell: _latex_escape(cell).replace("±", r"$\pm$").replace("–", "--"))
    latex = latex.reset_index(names=_latex_escape(table.index.name or ""))
    return latex.to_latex(caption=_latex_escape(caption).replace("±", r"$\pm$").replace("–", "--"),
                          label=label, escape=False, index=False, position="htbp",
                          column_format="l" + align * len(table.columns))


def write_table(table: pd.DataFrame, out_dir, name: str, caption: str, align: str = "r") -> list:
    """``name.md`` (caption, then the table) and ``name.tex`` (a LaTeX table) under ``out_dir``."""
    out_dir = project_path(out_dir)
    markdown = f"{caption}\n\n{table.to_markdown()}\n"
    return [write_text(out_dir / f"{name}.md", markdown),
            write_text(out_dir / f"{name}.tex", to_latex(table, caption, f"tab:{name}", align))]


_STABLE_METADATA = {"png": {}, "pdf": {"CreationDate": None}}   # no date: the same figure, the same file


def save_figure(figure, out_dir, name: str) -> list:
    """``name.png`` (150 dpi) and ``name.pdf`` under ``out_dir``; nothing for ``None`` (no data to draw)."""
    if figure is None:
        return []
    out_dir = project_path(out_dir)
    return [write_atomic(out_dir / f"{name}.{kind}",
                          lambda tmp, kind=kind: figure.savefig(tmp, format=kind, dpi=150,
                                                                bbox_inches="tight",
                                                                metadata=_STABLE_METADATA[kind]))
            for kind in ("png", "pdf")]


# ------------------------------------------------------------------------------------------ environment
def env_path(results_path) -> Path:
    """The sidecar bench appends one JSON line per run to: ``<results>.env.jsonl``."""
    path = Path(results_path)
    return path.with_name(path.name + ".env.jsonl")


def read_environments(results, frame: pd.DataFrame) -> list:
    """The recorded environments of the runs in ``frame`` (distinct, without run ids); [] if none of
    the sidecar's lines belongs to a run in ``frame``."""
    found = []
    for path in parse_paths(results):
        if env_path(path).is_file():
            found += _read_env_lines(env_path(path))
    run_ids = set(frame["run_id"].dropna())
    ours = [env for env in found if env.get("run_id") in run_ids]   # none: the table falls back to the rows
    distinct = []
    for env in ours:
        env = {key: value for key, value in _flatten(env).items() if key not in VOLATILE_ENV_KEYS}
        if env not in distinct:
            distinct.append(env)
    return distinct


def _read_env_lines(path: Path) -> list:
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ThesisError(f"environment file {path}, line {number}, is not JSON ({exc}): "
                                  "delete the line or the file (bench writes a new one)") from exc
    return lines


def _flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def environment_table(environments: list, frame: pd.DataFrame) -> pd.DataFrame:
    """Section 2.6: one row per property, one column per distinct machine/software set."""
    if not environments:
        environments = [{"host": host} for host in sorted(frame["host"].dropna().unique())] or [{}]
    keys = [key for key in ENV_LABELS if any(key in env for env in environments)]
    keys += sorted({key for env in environments for key in env} - set(keys))
    table = pd.DataFrame({f"machine {i}" if len(environments) > 1 else "value":
                          [_env_value(env.get(key)) for key in keys]
                          for i, env in enumerate(environments, 1)},
                         index=[ENV_LABELS.get(key, key) for key in keys])
    for column, label in (("thesislib_version", "thesislib"), ("git_commit", "git commit")):
        values = ", ".join(sorted(frame[column].dropna().astype(str).unique())) or "unknown"
        table.loc[label] = values
    table.index.name = "property"
    return table


def _env_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib
    if "inline" not in matplotlib.get_backend():   # a notebook draws inline; anywhere else: files only
        matplotlib.use("agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _bar_grid(data, column, confidence, title, hue=None, xlabel=None, hue_order=None):
    """Horizontal bars of ``column`` per method, one panel per dataset, t-interval error bars.

    The value axis starts at 0: a whisker that a wide interval (few repeats) would carry below zero is cut.
    """
    plt, sns = _plt()
    data = data.dropna(subset=[column])
    if data.empty:
        return None
    methods = method_order(data)
    if hue == "cache_state":
        hue_order = cache_states(data)
    grid = sns.catplot(data=data, kind="bar", x=column, y="method", col="dataset", hue=hue,
                       order=methods, col_order=dataset_order(data),
                       hue_order=[h for h in hue_order if h in set(data[hue])] if hue and hue_order else None,
                       errorbar=lambda v: t_interval(v, confidence), sharex=False,
                       height=0.32 * max(len(methods), 4) + 1.2, aspect=1.1)
    grid.set_titles("{col_name}")
    grid.set_axis_labels("", "")
    for ax in grid.axes.flat:
        ax.set_xlim(left=0)
        _compact_ticks(ax)
    if grid.legend is not None:
        grid.legend.set_title("page cache" if hue == "cache_state" else hue)
    grid.figure.supxlabel(xlabel or METRIC_BY_COLUMN[column].label, y=0.02)
    grid.figure.suptitle(title, y=1.03)
    return grid.figure


def _compact_ticks(ax):
    """At most four value ticks, written 50k / 1.5M, so that large numbers do not collide."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.xaxis.set_major_formatter(FuncFormatter(_compact_number))


def _compact_number(value, _position=None) -> str:
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def throughput_figure(frame: pd.DataFrame, confidence: float = 0.95, note: str = ""):
    """Images per second per method and dataset (warm and cold side by side when both were run)."""
    hue = "cache_state" if len(cache_states(frame)) > 1 else None
    return _bar_grid(frame, "images_per_s", confidence,
                     f"Throughput, mean and {confidence:.0%} CI{note}", hue)


MEMORY_KINDS = {"peak_ram_mb": "RAM", "peak_vram_mb": "VRAM"}


def memory_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Peak memory in long form (``peak_mib``), labelled ``memory``: the kind (RAM, VRAM where measured)
    and, when the results hold cold runs, the page-cache state, so that warm and cold are never pooled."""
    columns = [c for c in MEMORY_KINDS if frame[c].notna().any()]
    long = frame.melt(id_vars=["method", "dataset", "loader", "cache_state"], value_vars=columns,
                      var_name="memory", value_name="peak_mib")
    long["memory"] = long["memory"].map(MEMORY_KINDS)
    if len(cache_states(frame)) > 1:
        long["memory"] += ", " + long["cache_state"] + " cache"
    return long


def memory_figure(frame: pd.DataFrame, confidence: float = 0.95, note: str = ""):
    """Peak RAM, and peak VRAM beside it where a GPU was used, per method and dataset (warm and cold apart)."""
    long = memory_rows(frame)
    if long["peak_mib"].notna().sum() == 0:
        return None
    states = cache_states(frame)
    kinds = [kind for column, kind in MEMORY_KINDS.items() if frame[column].notna().any()]
    order = [f"{kind}, {state} cache" for kind in kinds for state in states] if len(states) > 1 else kinds
    what = " and ".join(kinds) + (f", {' and '.join(states)} page cache apart" if len(states) > 1 else "")
    return _bar_grid(long, "peak_mib", confidence, f"Peak {what}, mean and {confidence:.0%} CI{note}",
                     hue="memory" if len(order) > 1 else None, hue_order=order, xlabel="peak memory (MiB)")


def epoch_split_figure(frame: pd.DataFrame, confidence: float = 0.95, note: str = ""):
    """Mean epoch time stacked as data wait + compute, one panel per dataset (warm runs only)."""
    plt, sns = _plt()
    warm = frame[frame["cache_state"] == cache_states(frame)[0]]
    datasets = dataset_order(warm)
    methods = method_order(warm)
    figure, axes = plt.subplots(1, len(datasets), squeeze=False, sharey=True,
                                figsize=(3.6 * len(datasets), 0.32 * len(methods) + 1.4))
    colors = sns.color_palette(n_colors=2)
    for ax, dataset in zip(axes[0], datasets):
        _stacked_epoch(ax, warm[warm["dataset"] == dataset], methods, confidence, colors)
        ax.set_title(dataset)
        ax.set_xlabel("epoch time (s)")
        _compact_ticks(ax)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.suptitle(f"Epoch time: data wait + compute, {cache_states(frame)[0]} cache{note}")
    figure.tight_layout()
    return figure


def _stacked_epoch(ax, rows, methods, confidence, colors):
    epoch = summarize(rows, "epoch_s_mean", confidence).set_index("method").reindex(methods)
    data = summarize(rows, "data_s_mean", confidence).set_index("method").reindex(methods)
    positions = np.arange(len(methods))
    compute = (epoch["mean"] - data["mean"]).clip(lower=0)
    ax.barh(positions, data["mean"], color=colors[0], label="data wait")
    ax.barh(positions, compute, left=data["mean"], color=colors[1], label="compute")
    ax.errorbar(epoch["mean"], positions, xerr=epoch["half"], fmt="none", ecolor="black", capsize=2)
    ax.set_yticks(positions, methods)
    ax.set_xlim(left=0)
    ax.invert_yaxis()


def warm_cold_figure(frame: pd.DataFrame, confidence: float = 0.95, note: str = ""):
    """Data wait per epoch, warm against cold page cache; None when only one cache state was run."""
    if len(cache_states(frame)) < 2:
        return None
    both = frame.groupby(["method", "dataset"])["cache_state"].transform("nunique") > 1
    return _bar_grid(frame[both], "data_s_mean", confidence,
                     f"Data wait per epoch, warm vs cold page cache{note}", hue="cache_state")


# ---------------------------------------------------------------------------------------------- reading
def reading(frame: pd.DataFrame, confidence: float = 0.95) -> str:
    """A short written reading: which method wins where, by how much, and whether each lead is real.

    Every claim of a winner is tested with Welch's t-test at ``1 - confidence``; a lead that is not
    significant is written as such, never as a winner.
    """
    lines = []
    for state in cache_states(frame):
        for dataset in dataset_order(frame):
            rows = frame[(frame["dataset"] == dataset) & (frame["cache_state"] == state)]
            if rows["images_per_s"].notna().any():
                lines.append(_reading_dataset(rows, f"{dataset} ({state} cache)", confidence))
    lines += _reading_cold(frame, confidence) + _reading_missing(frame)
    return "\n".join(f"- {line}" for line in lines)


def welch_p(first, second) -> float | None:
    """Welch's t-test p-value of two samples; None with fewer than two values in one, NaN if neither varies."""
    first, second = (pd.Series(v, dtype=float).dropna() for v in (first, second))
    if len(first) < 2 or len(second) < 2:
        return None
    if first.std() == 0 and second.std() == 0:
        return math.nan
    return float(stats.ttest_ind(first, second, equal_var=False).pvalue)


def significant(p_value, confidence: float) -> bool:
    return p_value is not None and bool(np.isfinite(p_value)) and p_value < 1 - confidence


def verdict(p_value, confidence: float) -> str:
    """``significant (Welch p = …)``, ``not significant (…)``, or why the difference is untested."""
    if p_value is None:
        return "untested (fewer than two repeats)"
    if not np.isfinite(p_value):
        return "untestable (the repeats do not vary)"
    return f"{'significant' if p_value < 1 - confidence else 'not significant'} (Welch p = {p_value:.2g})"


def _values(rows: pd.DataFrame, column: str, method: str) -> pd.Series:
    return rows.loc[rows["method"] == method, column].dropna()


def _ranked(rows: pd.DataFrame, column: str, confidence: float, best_first_high: bool) -> pd.DataFrame:
    summary = summarize(rows, column, confidence).dropna(subset=["mean"])
    return summary.sort_values("mean", ascending=not best_first_high, kind="stable").reset_index(drop=True)


def _reading_dataset(rows: pd.DataFrame, where: str, confidence: float) -> str:
    speed = _ranked(rows, "images_per_s", confidence, best_first_high=True)
    if len(speed) == 1:
        return f"{where}: only {speed['method'][0]} was run ({speed['mean'][0]:,.0f} images/s)."
    parts = [_reading_speed(rows, speed, confidence),
             _reading_least(rows, "stall_pct", confidence, lambda v: f"{v:.1f}% of the epoch"),
             _reading_least(rows, "peak_ram_mb", confidence, lambda v: f"{v:,.0f} MiB")]
    return f"{where}: " + "; ".join(part for part in parts if part) + "."


def _reading_speed(rows, speed, confidence) -> str:
    """The fastest method, its lead over the runner-up and its gap to the slowest, each with its test."""
    best = speed.iloc[0]
    best_values = _values(rows, "images_per_s", best["method"])

    def against(other) -> str:
        p_value = welch_p(best_values, _values(rows, "images_per_s", other["method"]))
        return (f"{other['method']} ({other['mean']:,.0f} images/s, {best['mean'] / other['mean']:.1f}x): "
                f"{verdict(p_value, confidence)}")

    lead_p = welch_p(best_values, _values(rows, "images_per_s", speed.iloc[1]["method"]))
    head = "fastest is" if significant(lead_p, confidence) else "highest mean throughput:"
    text = f"{head} {best['method']} at {best['mean']:,.0f} images/s; lead over {against(speed.iloc[1])}"
    if len(speed) > 2:
        text += f"; over the slowest, {against(speed.iloc[-1])}"
    return text


def _reading_least(rows, column, confidence, show) -> str:
    """The method with the least ``column``, if its lead over the next one is significant."""
    ranked = _ranked(rows, column, confidence, best_first_high=False)
    if len(ranked) < 2:
        return ""
    low, near = ranked.iloc[0], ranked.iloc[1]
    p_value = welch_p(_values(rows, column, low["method"]), _values(rows, column, near["method"]))
    what = METRIC_BY_COLUMN[column].title
    if significant(p_value, confidence):
        return (f"least {what}: {low['method']} ({show(low['mean'])}; next {near['method']}, "
                f"{show(near['mean'])}: {verdict(p_value, confidence)})")
    if p_value is not None and np.isfinite(p_value):
        return (f"{what}: differences within noise (lowest {low['method']}, {show(low['mean'])}; next "
                f"{near['method']}, {show(near['mean'])}: {verdict(p_value, confidence)})")
    return (f"lowest mean {what}: {low['method']} ({show(low['mean'])}; next {near['method']}, "
            f"{show(near['mean'])}: {verdict(p_value, confidence)})")


def _reading_cold(frame: pd.DataFrame, confidence: float = 0.95) -> list:
    """Data wait per epoch, warm against cold page cache, per method and dataset run both ways, tested."""
    if not {"warm", "cold"} <= set(frame["cache_state"]):
        return []
    lines = []
    for dataset in dataset_order(frame):
        for method in method_order(frame):
            rows = frame[(frame["method"] == method) & (frame["dataset"] == dataset)]
            warm, cold = (rows.loc[rows["cache_state"] == s, "data_s_mean"].dropna() for s in ("warm", "cold"))
            if warm.empty or cold.empty or warm.mean() <= 0:
                continue
            lines.append(f"{method} on {dataset}: data wait per epoch {warm.mean():.3g} s warm, "
                         f"{cold.mean():.3g} s with a cold page cache ({cold.mean() / warm.mean():.1f}x), "
                         f"a difference that is {verdict(welch_p(warm, cold), confidence)}")
    return lines


def _reading_missing(frame: pd.DataFrame) -> list:
    missing = [name for name in LOADER_ORDER if name not in set(frame["loader"])]
    if not missing:
        return []
    return [f"no rows for {', '.join(missing)}: not run here (`python -m thesislib env` and the run "
            "folder's skipped.md say why)"]


# ------------------------------------------------------------------------------------------ the report
def build_report(results_paths, out_dir, confidence: float = 0.95, allow_mixed: bool = False,
                 note: str = "") -> list:
    """Read the results; write every table (.md, .tex), figure (.png, .pdf) and ``05_report.md``.

    ``allow_mixed`` reports rows of different thesislib versions / git commits together instead of
    refusing; ``note`` (e.g. " (example rows, invented)") is added to every figure title, table caption
    and the report page's title. Returns the paths written.
    """
    check_confidence(confidence)
    frame = read_results(results_paths, allow_mixed)
    env = environment_table(read_environments(results_paths, frame), frame)
    written = write_tables(frame, env, out_dir, confidence, note)
    figures = write_figures(frame, out_dir, confidence, note)
    return written + figures + [write_report_page(frame, env, out_dir, confidence, figure_names(figures), note)]


FIGURES = {"05_throughput": throughput_figure, "05_epoch_split": epoch_split_figure,
           "05_peak_memory": memory_figure, "05_warm_cold": warm_cold_figure}
ENV_CAPTION = "Hardware and software of the runs (section 2.6)"


def write_tables(frame: pd.DataFrame, env: pd.DataFrame, out_dir, confidence: float = 0.95,
                 note: str = "") -> list:
    """Every metric's table (``05_table_<column>``) and the environment table, as .md and .tex."""
    written = []
    for metric in metrics_present(frame):
        written += write_table(metric_table(frame, metric.column, confidence), out_dir,
                               f"05_table_{metric.column}", table_caption(frame, metric.column, confidence, note))
    return written + write_table(env, out_dir, "05_environment", f"{ENV_CAPTION}{note}.", align="l")


def write_figures(frame: pd.DataFrame, out_dir, confidence: float = 0.95, note: str = "", show=None) -> list:
    """Draw every figure of :data:`FIGURES`, pass it to ``show`` (a notebook's ``display``), save it as
    PNG and PDF and close it. A figure with nothing to draw (e.g. warm vs cold without cold runs) is
    skipped. Returns the paths written."""
    written = []
    for name, make_figure in FIGURES.items():
        figure = make_figure(frame, confidence, note)
        if figure is not None and show is not None:
            show(figure)
        written += write_figure(figure, out_dir, name)
    return written


def figure_names(written) -> list:
    """The names (of :data:`FIGURES`) whose PNG is among the ``written`` paths, in that order."""
    pngs = {Path(path).stem for path in written if Path(path).suffix == ".png"}
    return [name for name in FIGURES if name in pngs]


def write_figure(figure, out_dir, name: str) -> list:
    """Save ``figure`` as PNG and PDF (see :func:`save_figure`) and close it."""
    written = save_figure(figure, out_dir, name)
    if figure is not None:
        _plt()[0].close(figure)
    return written


def write_report_page(frame: pd.DataFrame, env: pd.DataFrame, out_dir, confidence: float = 0.95,
                      figures=(), note: str = "") -> Path:
    """``05_report.md``: the environment, the reading, every table and the ``figures`` (names of
    :data:`FIGURES` that were written: see :func:`figure_names`) on one page."""
    tables = "\n\n".join(f"### {m.label}\n\n{table_caption(frame, m.column, confidence, note)}\n\n"
                          f"{metric_table(frame, m.column, confidence).to_markdown()}"
                          for m in metrics_present(frame))
    counts = frame.groupby(["method", "dataset", "cache_state"])["images_per_s"].count()
    images = "\n".join(f"![{name}]({name}.png)" for name in figures) or "No figure had anything to draw."
    text = (f"# Results: loading methods versus datasets{note}\n\n{len(frame)} rows{note} from "
            f"{frame['run_id'].nunique()} run(s).\n\n## Environment (section 2.6)\n\n{env.to_markdown()}"
            f"\n\n## Reading\n\n{reading(frame, confidence)}\n\n## Tables\n\n{tables}"
            f"\n\n## Figures\n\nBars: means; whiskers: the {confidence:.0%} Student-t interval, cut at 0."
            f"{few_repeats(counts, confidence)}\n\n{images}\n")
    return write_text(project_path(out_dir) / "05_report.md", text)


def check_confidence(confidence) -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ThesisError(f"confidence must be a number between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return float(confidence)


# ------------------------------------------------------------------------------------------ example rows
# Invented numbers in the results format, for the stored outputs of 05_results.ipynb and for trying the
# report without running anything. They are NOT measurements: `make run` writes measured rows.
EXAMPLE_METHODS = {"files": ("files-jpeg", 4.0), "numpy": ("npy-uint8", 0.6), "hdf5": ("hdf5", 0.9),
                   "zarr": ("zarr", 1.3), "memory": ("npy-uint8", 0.3),
                   "torchvision": ("files-jpeg", 5.0)}   # loader: (store, ns of loading per byte)
EXAMPLE_ENVIRONMENT = {"thesislib": "example", "host": "example", "os": "Linux (example)",
                       "cpu": "example CPU", "cpu_cores": 2, "cpu_threads": 2, "ram_gb": 8.0, "gpu": "none",
                       "vram_gb": None, "disk": "example SSD", "disk_free_gb": 100.0, "python": "3.12",
                       "torch": "2.14.1", "torch_cuda": "none (CPU-only build)"}


def example_results(seed: int = 0, repeats: int = 3) -> pd.DataFrame:
    """Invented, deterministic rows with every results column: an example, not a measurement."""
    rng = np.random.default_rng(seed)
    rows = [_example_row(rng, loader, dataset, state, repeat)
            for dataset in DATASETS for loader in EXAMPLE_METHODS
            for state in (("warm", "cold") if loader in ("files", "hdf5") else ("warm",))
            for repeat in range(repeats)]
    return pd.DataFrame(rows, columns=[*RESULT_COLUMNS, *OPTIONAL_COLUMNS])


def _example_row(rng, loader: str, dataset: str, state: str, repeat: int) -> dict:
    spec, (store, ns_per_byte) = DATASETS[dataset], EXAMPLE_METHODS[loader]
    images, image_bytes = round(spec.train * 0.02), 3 * spec.size ** 2
    data_s = images * image_bytes * ns_per_byte * 1e-9 * (4 if state == "cold" else 1) * rng.normal(1, 0.05)
    epoch_s = data_s + images * image_bytes * 2e-9 * rng.normal(1, 0.03)
    run_id = f"example-{dataset}-{loader}-{state}"
    return {"run_id": run_id, "started_at": "2025-01-01T00:00:00", "git_commit": "example",
            "host": "example", "loader": loader, "store": store, "dataset": dataset, "scale": 0.02,
            "precision": "fp32", "device": "cpu", "model": "small", "epochs": 1, "batch_size": 64,
            "num_workers": 0, "seed": 0, "repeat": repeat, "total_train_s": round(epoch_s, 4),
            "epoch_s_mean": round(epoch_s, 4), "data_s_mean": round(data_s, 4),
            "stall_pct": round(100 * data_s / epoch_s, 2), "images_per_s": round(images / epoch_s, 1),
            "peak_ram_mb": round(600 + (images * image_bytes / 2**20 if loader == "memory" else 40)
                                 + rng.normal(0, 5), 1),
            "peak_vram_mb": np.nan, "gpu_util_pct": np.nan, "cpu_util_pct": round(rng.uniform(48, 52), 1),
            "train_loss": round(math.log(spec.num_classes) * rng.uniform(0.95, 1.0), 4),
            "val_acc": round(1 / spec.num_classes * rng.uniform(0.8, 1.2), 4), "cache_state": state,
            "cached_pct": 0.0 if state == "cold" else 100.0, "thesislib_version": "example"}


def write_example_results(path, seed: int = 0) -> Path:
    """Write :func:`example_results` to ``path`` (CSV) and an invented environment to its sidecar."""
    path = project_path(path)
    frame = example_results(seed)
    write_text(path, frame.to_csv(index=False))
    lines = [json.dumps({"run_id": run_id, **EXAMPLE_ENVIRONMENT}) for run_id in frame["run_id"].unique()]
    write_text(env_path(path), "\n".join(lines) + "\n")
    return path
