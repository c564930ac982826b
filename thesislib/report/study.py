"""The measured study's tables: the thesis's "Datu ielādes metodes PRET datu kopām" table, the float16
against float32 comparison and the headline tables grouped by run condition.

"Training time, not speed": every table here leads with the total training time (``total_train_s``) and
the data-loading time per epoch (``data_s_mean``); images/s, where shown, comes last.

A study row is one repeat of one rank; :func:`per_repeat` folds a torchrun repeat's ranks into one row (the
slowest rank's times, as the protocol ends when it ends) so that every statistic counts repeats.
"""

import math

import pandas as pd

from thesislib.datasets import DATASETS
from thesislib.report.load import add_labels, dataset_order
from thesislib.report.statistics import summarize, welch_p
from thesislib.report.tables import format_cell

THESIS_TABLE_TITLE = "Datu ielādes metodes PRET datu kopām"
# The thesis table's condition: the thesis's model, each loader on its default store, one process, no workers.
THESIS_CONDITION = {"model": "small", "cache_state": "warm", "num_workers": 0, "world_size": 1}
PRECISION_STORES = ("npy-uint8", "npy-float16", "npy-float32")
ITEMSIZE = {"npy-uint8": 1, "npy-float16": 2, "npy-float32": 4}
CONDITION_KEYS = ("model", "source", "cache_state", "num_workers", "world_size")
SLOWEST = {"total_train_s": "max", "epoch_s_mean": "max", "data_s_mean": "max", "stall_pct": "max",
           "images_per_s": "sum", "val_acc": "mean", "train_loss": "mean"}


def per_repeat(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run_id, repeat): a torchrun repeat's ranks folded (see :data:`SLOWEST`); a ``source``
    column says ``local``, ``remote`` or ``remote (cached copy)`` (:func:`source_of`); labels re-derived."""
    frame = frame.fillna({"world_size": 1, "rank": 0})
    frame = frame.assign(cache_state=frame["cache_state"].astype(object).fillna("warm"))
    copies = frame.get("cache_copy_s", pd.Series(math.nan, index=frame.index))
    locations = frame.get("store_location", pd.Series("", index=frame.index)).astype(object).fillna("").astype(str)
    frame = frame.assign(source=[source_of(copy, location) for copy, location in zip(copies, locations)])
    keys = ["run_id", "repeat", "loader", "store", "dataset"]   # example rows share run ids across methods
    how = {c: SLOWEST.get(c, "first") for c in frame.columns if c not in (*keys, "method")}
    folded = frame.groupby(keys, sort=False).agg(how).reset_index()
    return add_labels(folded)


def source_of(copy_s, location: str) -> str:
    """``remote (cached copy)`` (bench --cache), ``remote`` (a store at a URL) or ``local``."""
    if pd.notna(copy_s):
        return "remote (cached copy)"
    return "remote" if "://" in location else "local"


def select(frame: pd.DataFrame, **condition) -> pd.DataFrame:
    """The rows matching every ``column=value`` of ``condition``."""
    mask = pd.Series(True, index=frame.index)
    for column, value in condition.items():
        mask &= frame[column] == value
    return frame[mask]


def default_store_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of each loader on its default store (the loader's method as the thesis names it)."""
    from thesislib.loaders import DEFAULT_STORES

    mask = [DEFAULT_STORES.get(loader) == store for loader, store in zip(frame["loader"], frame["store"])]
    return frame[pd.Series(mask, index=frame.index, dtype=bool)]


def dataset_header(frame: pd.DataFrame, dataset: str) -> str:
    """``cifar10 32×32, scale 1`` (every scale present, when the cut rule lowered some)."""
    spec = DATASETS.get(dataset)
    size = f" {spec.size}×{spec.size}" if spec else ""
    scales = ", ".join(f"{s:g}" for s in sorted(frame.loc[frame["dataset"] == dataset, "scale"].unique()))
    return f"{dataset}{size}, scale {scales}"


def thesis_table(frame: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """The thesis's table: loading methods (rows: loader on its default store) against data sets (columns)
    of the total training time, mean ± half-width of the Student-t interval, for :data:`THESIS_CONDITION`."""
    rows = default_store_rows(select(per_repeat(frame), **THESIS_CONDITION)).assign(method=lambda f: f["loader"])
    if rows.empty:
        return pd.DataFrame(index=pd.Index([], name="datu ielādes metode"))
    summary = summarize(rows, "total_train_s", confidence)
    summary["cell"] = [format_cell(m, h) for m, h in zip(summary["mean"], summary["half"])]
    table = summary.pivot_table(index="method", columns="dataset", values="cell", aggfunc="first")
    order = summary.groupby("method")["mean"].mean().sort_values().index
    table = table.reindex(index=order, columns=[d for d in dataset_order(rows) if d in table.columns])
    table.columns = [dataset_header(rows, d) for d in table.columns]
    table.index.name = "datu ielādes metode"
    return table.fillna("–")


def thesis_caption(frame: pd.DataFrame, confidence: float = 0.95) -> str:
    rows = default_store_rows(select(per_repeat(frame), **THESIS_CONDITION))
    counts = rows.groupby(["loader", "dataset"]).size()
    n = f"{counts.min()}–{counts.max()}" if len(counts) and counts.min() != counts.max() else \
        f"{counts.max() if len(counts) else 0}"
    return (f"{THESIS_TABLE_TITLE} (loading methods against data sets): total training time in s, mean ± "
            f"half-width of the {confidence:.0%} Student-t interval over {n} repeats; model small, warm page "
            "cache, num_workers 0, one process, each loader on its default store (–: not measured).")


def headline_tables(frame: pd.DataFrame, confidence: float = 0.95) -> list:
    """(title, table) per run condition present (:data:`CONDITION_KEYS`: model, local/remote, page cache,
    workers, world size): rows methods, columns data sets, cells total training time and data-loading time
    per epoch (each mean ± half-width), then images/s."""
    rows = per_repeat(frame)
    out = []
    for values, group in rows.groupby(list(CONDITION_KEYS), sort=True):
        condition = dict(zip(CONDITION_KEYS, values))
        title = (f"model {condition['model']}, {condition['source']}, {condition['cache_state']} cache, "
                 f"{int(condition['num_workers'])} workers, world size {int(condition['world_size'])}")
        out.append((title, condition_table(group.assign(method=short_labels(group)), confidence)))
    return out


def short_labels(rows: pd.DataFrame) -> pd.Series:
    """``loader (store)``, plus the scale where one data set was measured at several in these rows."""
    label = rows["loader"].astype(str) + " (" + rows["store"].astype(str) + ")"
    several = rows.groupby("dataset")["scale"].transform("nunique") > 1
    return label.where(~several, label + " scale=" + rows["scale"].map(lambda v: f"{v:g}"))


def condition_table(rows: pd.DataFrame, confidence: float) -> pd.DataFrame:
    cells = {}
    for column, name in (("total_train_s", "training s"), ("data_s_mean", "data s/epoch"),
                         ("images_per_s", "images/s")):
        summary = summarize(rows, column, confidence)
        for r in summary.itertuples():
            cells.setdefault(r.method, {})[(r.dataset, name)] = format_cell(r.mean, r.half)
    table = pd.DataFrame.from_dict(cells, orient="index")
    datasets = dataset_order(rows)
    table = table.reindex(columns=pd.MultiIndex.from_tuples(
        [(d, n) for d in datasets for n in ("training s", "data s/epoch", "images/s") if (d, n) in table.columns]))
    table.index.name = "method"
    table = table.sort_index().fillna("–")
    return table[(table != "–").any(axis=1)]  # a label measured only under other conditions has no row here


def array_bytes(dataset: str, scale: float, store: str) -> int:
    """Bytes of a npy store's image arrays: images (train + val at ``scale``) × H × W × 3 × itemsize."""
    spec = DATASETS[dataset]
    count = sum(spec.split_sizes(scale).values())
    return count * spec.size * spec.size * 3 * ITEMSIZE[store]


def precision_summary(frame: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """The three npy stores read by ``numpy`` (warm, one process, no workers) per data set, one row each:
    bytes of the image arrays, load time (total training time with ``--model none``), total training time,
    data-loading time per epoch and accuracy with the model ``small``; each time mean and half-width.

    A study may train ``small`` at a smaller scale than it loads with ``none`` (its cut rule 1): each quantity
    comes from the largest scale measured for its model, and says which (``load_s_scale``, ``train_s_scale``,
    ...); ``scale`` (the bytes') is the largest of them."""
    rows = select(per_repeat(frame), loader="numpy", cache_state="warm", num_workers=0, world_size=1)
    rows = rows[rows["store"].isin(PRECISION_STORES)]
    records = []
    for (dataset, store), group in rows.groupby(["dataset", "store"], sort=False):
        record = {"dataset": dataset, "store": store}
        for label, model, column in (("load_s", "none", "total_train_s"), ("train_s", "small", "total_train_s"),
                                     ("data_s", "small", "data_s_mean"), ("val_acc", "small", "val_acc")):
            measured = group[group["model"] == model]
            scale = float(measured["scale"].max()) if len(measured) else math.nan
            values = measured.loc[measured["scale"] == scale, column]
            record[label], record[label + "_half"] = _mean_half(values, confidence)
            record[label + "_n"] = int(values.count())
            record[label + "_scale"] = scale
        record["scale"] = float(group["scale"].max())
        record["bytes_mb"] = array_bytes(dataset, record["scale"], store) / 2**20
        records.append(record)
    order = {s: i for i, s in enumerate(PRECISION_STORES)}
    table = pd.DataFrame(records)
    if table.empty:
        return table
    return table.sort_values(["dataset", "store"], key=lambda c: c.map(order) if c.name == "store" else
                             c.map(lambda d: list(DATASETS).index(d) if d in DATASETS else 99)).reset_index(drop=True)


def _mean_half(values, confidence):
    from thesislib.report.statistics import t_halfwidth

    values = pd.Series(values, dtype=float).dropna()
    return (float(values.mean()) if len(values) else math.nan), t_halfwidth(values, confidence)


def precision_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`precision_summary` as printed cells (time first, bytes beside it, the scales last)."""
    if summary.empty:
        return summary
    table = pd.DataFrame({
        "store": [f"{dataset_header_plain(d, None)} · {store}" for d, store in zip(summary["dataset"], summary["store"])],
        "total training s (small)": [format_cell(m, h) for m, h in zip(summary["train_s"], summary["train_s_half"])],
        "data s/epoch (small)": [format_cell(m, h) for m, h in zip(summary["data_s"], summary["data_s_half"])],
        "load s (model none)": [format_cell(m, h) for m, h in zip(summary["load_s"], summary["load_s_half"])],
        "image arrays MiB": [f"{b:.2f}" for b in summary["bytes_mb"]],
        "val accuracy": [format_cell(m, h) for m, h in zip(summary["val_acc"], summary["val_acc_half"])],
        "scale: load, bytes / training": [f"{_scale_text(a)} / {_scale_text(b)}"
                                          for a, b in zip(summary["load_s_scale"], summary["train_s_scale"])],
    })
    return table.set_index("store")


def _scale_text(scale) -> str:
    return "–" if pd.isna(scale) else f"{scale:g}"


def dataset_header_plain(dataset: str, scale) -> str:
    """``cifar10 32×32, scale 0.2`` (no scale part when ``scale`` is None)."""
    spec = DATASETS.get(dataset)
    where = "" if scale is None else f", scale {scale:g}"
    return f"{dataset} {spec.size}×{spec.size}{where}" if spec else f"{dataset}{where}"


def precision_figure(summary: pd.DataFrame, note: str = ""):
    """Bars per npy store, one panel per quantity (training time, load time, bytes, accuracy), one colour
    per data set; whiskers the intervals. Returns the matplotlib figure (no global state is set)."""
    from matplotlib.figure import Figure

    panels = (("train_s", "total training time, small (s)"), ("load_s", "load time, model none (s)"),
              ("bytes_mb", "image arrays (MiB)"), ("val_acc", "validation accuracy"))
    figure = Figure(figsize=(12, 3.2), layout="constrained")
    axes = figure.subplots(1, len(panels))
    datasets = list(dict.fromkeys(summary["dataset"]))
    width = 0.8 / max(1, len(datasets))
    for ax, (column, title) in zip(axes, panels):
        for i, dataset in enumerate(datasets):
            part = summary[summary["dataset"] == dataset].set_index("store").reindex(PRECISION_STORES)
            half = part.get(column + "_half", pd.Series(0.0, index=part.index)).fillna(0.0)
            ax.bar([x + i * width for x in range(len(PRECISION_STORES))], part[column].to_numpy(), width,
                   yerr=half.to_numpy(), capsize=2, label=dataset)
        ax.set_xticks([x + width * (len(datasets) - 1) / 2 for x in range(len(PRECISION_STORES))],
                      [s.replace("npy-", "") for s in PRECISION_STORES])
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"uint8, float16 and float32 npy stores{note}", fontsize=10)
    return figure


def welch_between(rows: pd.DataFrame, column: str, first: dict, second: dict):
    """(mean of ``first``, mean of ``second``, Welch p or None) of ``column`` over two row selections."""
    a, b = select(rows, **first)[column], select(rows, **second)[column]
    return (a.mean() if len(a) else math.nan), (b.mean() if len(b) else math.nan), welch_p(a, b)


def training_time_figure(frame: pd.DataFrame, confidence: float = 0.95, note: str = ""):
    """Total training time per method and data set (warm and cold side by side when both were run): the
    headline figure (images/s is secondary, in 05_throughput)."""
    from thesislib.report.figures import _bar_grid
    from thesislib.report.load import cache_states

    hue = "cache_state" if len(cache_states(frame)) > 1 else None
    return _bar_grid(frame, "total_train_s", confidence, f"Total training time, mean and {confidence:.0%} CI{note}",
                     hue)


def headline_first(metrics) -> list:
    """The metrics with total training time and data-loading time per epoch first (the headline)."""
    first = [m for m in metrics if m.column in ("total_train_s", "data_s_mean")]
    return sorted(first, key=lambda m: m.column != "total_train_s") + [m for m in metrics if m not in first]


def write_study_figures(frame: pd.DataFrame, out_dir, confidence: float = 0.95, note: str = "",
                        show=None) -> list:
    """The training-time figure, then every figure of :data:`thesislib.report.figures.FIGURES`."""
    from thesislib.report.figures import write_figure, write_figures

    figure = training_time_figure(frame, confidence, note)
    if figure is not None and show is not None:
        show(figure)
    return write_figure(figure, out_dir, "05_training_time") + write_figures(frame, out_dir, confidence, note,
                                                                            show)
