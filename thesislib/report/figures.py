"""The chapter-3 figures (seaborn bars with t-interval whiskers), saved as PNG and PDF."""

from pathlib import Path

import numpy as np
import pandas as pd

from thesislib.atomic import write_atomic
from thesislib.paths import project_path
from thesislib.report.columns import METRIC_BY_COLUMN
from thesislib.report.load import method_order, dataset_order, cache_states
from thesislib.report.statistics import t_interval, summarize


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


FIGURES = {"05_throughput": throughput_figure, "05_epoch_split": epoch_split_figure,
           "05_peak_memory": memory_figure, "05_warm_cold": warm_cold_figure}


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
