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
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

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
OPTIONAL_COLUMNS = {"cache_state": "warm", "cached_pct": np.nan, "thesislib_version": None}
TEXT_COLUMNS = ("run_id", "started_at", "git_commit", "host", "loader", "store", "dataset", "precision",
                "device", "model", "cache_state", "thesislib_version")
LOADER_ORDER = ("files", "numpy", "cupy", "hdf5", "zarr", "dali", "memory", "torchvision")
CACHE_ORDER = ("warm", "cold")
# Settings that, when they differ within one table cell, are added to the row label to keep cells apart.
CONDITION_COLUMNS = ("model", "device", "precision", "epochs", "batch_size", "num_workers", "scale")


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
    Metric("peak_ram_mb", "peak RAM", "MB", "lower"),
    Metric("peak_vram_mb", "peak VRAM", "MB", "lower"),
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


def table_caption(frame: pd.DataFrame, column: str, confidence: float = 0.95) -> str:
    label = METRIC_BY_COLUMN[column].label
    counts = summarize(frame, column, confidence)["n"]
    if counts.max() == 0:
        return f"{label}: not measured in these runs (n/a), e.g. GPU figures of CPU-only runs."
    repeats = f"{counts.max()}" if counts.min() == counts.max() else f"{counts.min()}–{counts.max()}"
    return (f"{label}: mean ± half-width of the {confidence:.0%} Student-t confidence interval over "
            f"{repeats} repeats (n/a: one repeat or not measured; –: not run).")


def metrics_present(frame: pd.DataFrame) -> list:
    """The metrics worth a table: the protocol's, and the page-cache share when bench recorded it."""
    return [m for m in METRICS if m.column != "cached_pct" or frame["cached_pct"].notna().any()]


# ---------------------------------------------------------------------------------------------- writing
def _write_atomic(path: Path, write) -> Path:
    """Call ``write(temporary_path)``, then rename onto ``path``: no half-written file is ever left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    os.chmod(temporary, 0o644)   # mkstemp makes it private; results are meant to be read
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_text(path: Path, text: str) -> Path:
    return _write_atomic(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _latex_escape(text: str) -> str:
    for char in "\\&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text


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
    return [_write_atomic(out_dir / f"{name}.{kind}",
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
    """The recorded environments of the runs in ``frame`` (distinct, without run ids); [] if none."""
    found = []
    for path in parse_paths(results):
        if env_path(path).is_file():
            found += _read_env_lines(env_path(path))
    run_ids = set(frame["run_id"].dropna())
    ours = [env for env in found if env.get("run_id") in run_ids] or found
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


def _bar_grid(data, column, confidence, title, hue=None, xlabel=None):
    """Horizontal bars of ``column`` per method, one panel per dataset, t-interval error bars."""
    plt, sns = _plt()
    data = data.dropna(subset=[column])
    if data.empty:
        return None
    methods = method_order(data)
    grid = sns.catplot(data=data, kind="bar", x=column, y="method", col="dataset", hue=hue,
                       order=methods, col_order=dataset_order(data),
                       hue_order=cache_states(data) if hue == "cache_state" else None,
                       errorbar=lambda v: t_interval(v, confidence), sharex=False,
                       height=0.32 * max(len(methods), 4) + 1.2, aspect=1.1)
    grid.set_titles("{col_name}")
    grid.set_axis_labels("", "")
    for ax in grid.axes.flat:
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


def memory_figure(frame: pd.DataFrame, confidence: float = 0.95, note: str = ""):
    """Peak RAM, and peak VRAM beside it where a GPU was used, per method and dataset."""
    columns = [c for c in ("peak_ram_mb", "peak_vram_mb") if frame[c].notna().any()]
    if not columns:
        return None
    long = frame.melt(id_vars=["method", "dataset", "loader"], value_vars=columns,
                      var_name="memory", value_name="peak_mb")
    long["memory"] = long["memory"].map({"peak_ram_mb": "RAM", "peak_vram_mb": "VRAM"})
    what = " and ".join(long["memory"].unique())
    return _bar_grid(long, "peak_mb", confidence, f"Peak {what}, mean and {confidence:.0%} CI{note}",
                     hue="memory" if len(columns) > 1 else None, xlabel="peak memory (MB)")


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
    """A short written reading: which method wins where, by how much, and whether the lead is real."""
    lines = []
    for state in cache_states(frame):
        for dataset in dataset_order(frame):
            rows = frame[(frame["dataset"] == dataset) & (frame["cache_state"] == state)]
            if rows["images_per_s"].notna().any():
                lines.append(_reading_dataset(rows, f"{dataset} ({state} cache)", confidence))
    lines += _reading_cold(frame) + _reading_missing(frame)
    return "\n".join(f"- {line}" for line in lines)


def _reading_dataset(rows: pd.DataFrame, where: str, confidence: float) -> str:
    speed = summarize(rows, "images_per_s", confidence).dropna(subset=["mean"])
    speed = speed.sort_values("mean", ascending=False)
    best, worst = speed.iloc[0], speed.iloc[-1]
    text = f"{where}: fastest is {best['method']} at {best['mean']:,.0f} images/s"
    if len(speed) > 1:
        text += (f", {best['mean'] / worst['mean']:.1f}x the slowest ({worst['method']}, "
                 f"{worst['mean']:,.0f} images/s); {_lead(rows, speed, confidence)}")
    stall = summarize(rows, "stall_pct", confidence).dropna(subset=["mean"])
    if not stall.empty:
        low = stall.loc[stall["mean"].idxmin()]
        text += f"; least stall: {low['method']} ({low['mean']:.1f}% of the epoch waiting for data)"
    ram = summarize(rows, "peak_ram_mb", confidence).dropna(subset=["mean"])
    if not ram.empty:
        low = ram.loc[ram["mean"].idxmin()]
        text += f"; least peak RAM: {low['method']} ({low['mean']:,.0f} MB)"
    return text + "."


def _lead(rows, speed, confidence) -> str:
    """Whether the fastest beats the runner-up by more than chance (Welch's t-test)."""
    first, second = (rows.loc[rows["method"] == m, "images_per_s"].dropna() for m in speed["method"][:2])
    runner = speed.iloc[1]["method"]
    if len(first) < 2 or len(second) < 2:
        return f"one repeat, so its lead over {runner} is untested"
    p_value = stats.ttest_ind(first, second, equal_var=False).pvalue
    if not np.isfinite(p_value):
        return f"its lead over {runner} cannot be tested (the repeats do not vary)"
    verdict = "significant" if p_value < 1 - confidence else "not significant"
    return f"its lead over {runner} is {verdict} (Welch p = {p_value:.2g})"


def _reading_cold(frame: pd.DataFrame) -> list:
    if len(cache_states(frame)) < 2:
        return []
    means = frame.pivot_table(index=["method", "dataset"], columns="cache_state", values="data_s_mean")
    means = means.dropna(subset=["warm", "cold"]) if {"warm", "cold"} <= set(means.columns) else means[:0]
    return [f"{method} on {dataset}: data wait per epoch {row['warm']:.3g} s warm, {row['cold']:.3g} s "
            f"with a cold page cache ({row['cold'] / row['warm']:.1f}x)"
            for (method, dataset), row in means.iterrows() if row["warm"] > 0]


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
    refusing; ``note`` is appended to every figure title (e.g. " (example rows)"). Returns the paths.
    """
    check_confidence(confidence)
    frame = read_results(results_paths, allow_mixed)
    env = environment_table(read_environments(results_paths, frame), frame)
    written = write_tables(frame, env, out_dir, confidence)
    for name, make_figure in FIGURES.items():
        written += write_figure(make_figure(frame, confidence, note), out_dir, name)
    return written + [write_report_page(frame, env, out_dir, confidence)]


FIGURES = {"05_throughput": throughput_figure, "05_epoch_split": epoch_split_figure,
           "05_peak_memory": memory_figure, "05_warm_cold": warm_cold_figure}
ENV_CAPTION = "Hardware and software of the runs (section 2.6)."


def write_tables(frame: pd.DataFrame, env: pd.DataFrame, out_dir, confidence: float = 0.95) -> list:
    """Every metric's table (``05_table_<column>``) and the environment table, as .md and .tex."""
    written = []
    for metric in metrics_present(frame):
        written += write_table(metric_table(frame, metric.column, confidence), out_dir,
                               f"05_table_{metric.column}", table_caption(frame, metric.column, confidence))
    return written + write_table(env, out_dir, "05_environment", ENV_CAPTION, align="l")


def write_figure(figure, out_dir, name: str) -> list:
    """Save ``figure`` as PNG and PDF (see :func:`save_figure`) and close it."""
    written = save_figure(figure, out_dir, name)
    if figure is not None:
        _plt()[0].close(figure)
    return written


def write_report_page(frame: pd.DataFrame, env: pd.DataFrame, out_dir, confidence: float = 0.95) -> Path:
    """``05_report.md``: the environment, the reading, every table and the figures on one page."""
    tables = "\n\n".join(f"### {m.label}\n\n{table_caption(frame, m.column, confidence)}\n\n"
                          f"{metric_table(frame, m.column, confidence).to_markdown()}"
                          for m in metrics_present(frame))
    names = [name for name in FIGURES if name != "05_warm_cold" or len(cache_states(frame)) > 1]
    figures = "\n".join(f"![{name}]({name}.png)" for name in names)
    text = (f"# Results: loading methods versus datasets\n\n{len(frame)} rows from "
            f"{frame['run_id'].nunique()} run(s).\n\n## Environment (section 2.6)\n\n{env.to_markdown()}"
            f"\n\n## Reading\n\n{reading(frame, confidence)}\n\n## Tables\n\n{tables}"
            f"\n\n## Figures\n\n{figures}\n")
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
