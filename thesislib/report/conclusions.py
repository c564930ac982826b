"""Chapters 4 and 5 written from the results: every sentence is built from the numbers it cites and the
Welch test behind it; a comparison the results lack says it was not measured (notebook 06).

"Training time, not speed": claims are about total training time and data-loading time per epoch.
"""

import math

import pandas as pd

from thesislib.datasets import DATASETS
from thesislib.report.statistics import verdict
from thesislib.report.study import (PRECISION_STORES, THESIS_CONDITION, default_store_rows, per_repeat,
                                    precision_summary, select, welch_between)

# What the study set out to check (the and the supervisor's questions), each tested below by
# :func:`expectations`: (label, the rows of the first side, of the second, column, the side expected lower).
EXPECTATIONS = (
    ("array stores (numpy on npy-uint8) train faster than image files (files on files-jpeg)",
     {"loader": "numpy", "store": "npy-uint8"}, {"loader": "files", "store": "files-jpeg"}, "total_train_s"),
    ("float16 arrays load faster than float32 ones (half the bytes)",
     {"loader": "numpy", "store": "npy-float16"}, {"loader": "numpy", "store": "npy-float32"}, "data_s_mean"),
)


def fmt(value: float, unit: str = " s") -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}{unit}"


def percent(first: float, second: float) -> str:
    """``first`` against ``second``: "N% less" or "N% more", in % of ``second``."""
    if not (math.isfinite(first) and math.isfinite(second) and second):
        return "n/a"
    change = 100 * (first - second) / second
    return f"{abs(change):.0f}% {'more' if change > 0 else 'less'}"


def thesis_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return default_store_rows(select(per_repeat(frame), **THESIS_CONDITION))


def datasets_of(frame: pd.DataFrame) -> list:
    present = set(frame["dataset"])
    return [d for d in DATASETS if d in present] + sorted(present - set(DATASETS))


def fastest_per_dataset(frame: pd.DataFrame, confidence: float = 0.95) -> list:
    """Per data set, the loader (on its default store) with the shortest mean total training time, its
    margin over the runner-up and the slowest, each tested."""
    rows = thesis_rows(frame)
    sentences = []
    for dataset in datasets_of(frame):
        part = rows[rows["dataset"] == dataset]
        means = part.groupby("loader")["total_train_s"].mean().sort_values()
        if len(means) < 2:
            sentences.append(f"{dataset}: fewer than two loading methods measured with the small model "
                             f"(warm cache, one process), so the fastest was not measured.")
            continue
        best, second, worst = means.index[0], means.index[1], means.index[-1]
        sample = {name: part.loc[part["loader"] == name, "total_train_s"] for name in (best, second, worst)}
        from thesislib.report.statistics import welch_p

        slowest = "" if worst == second else (
            f" and {fmt(means[worst])} for the slowest, {worst} ({percent(means[best], means[worst])}; "
            f"{verdict(welch_p(sample[best], sample[worst]), confidence)})")
        sentences.append(
            f"{dataset}: {best} trains fastest of {len(means)} methods, {fmt(means[best])} in total against "
            f"{fmt(means[second])} for {second} ({percent(means[best], means[second])}; "
            f"{verdict(welch_p(sample[best], sample[second]), confidence)}){slowest}.")
    return sentences


def bottleneck(frame: pd.DataFrame, threshold: float = 50.0) -> list:
    """Stall share (data wait in % of the epoch) against image size, model small: per data set the mean
    over loaders, its range, and the first size from which the mean stall is below ``threshold`` %."""
    rows = thesis_rows(frame)
    if rows.empty:
        return ["Stall share against image size: no run with the small model was measured."]
    parts, below = [], None
    for dataset in datasets_of(rows):
        stall = rows[rows["dataset"] == dataset].groupby("loader")["stall_pct"].mean()
        size = DATASETS[dataset].size if dataset in DATASETS else "?"
        parts.append(f"{dataset} ({size}×{size}): {stall.mean():.0f}% on average over {len(stall)} loader(s) "
                     f"({stall.min():.0f}% {stall.idxmin()} to {stall.max():.0f}% {stall.idxmax()})")
        if below is None and stall.mean() < threshold:
            below = dataset
    if len(parts) == 1:
        return [f"With the small model the training loop waits for data: {parts[0]}; one image size only, so "
                "where loading stops being the bottleneck was not measured."]
    verdict_text = (f"the mean stall stays at or above {threshold:.0f}% at every size measured, so loading "
                    "remains the bottleneck" if below is None else
                    f"the mean stall is first below {threshold:.0f}% at {below}: there compute, not loading, "
                    "takes most of the epoch")
    return [f"With the small model the training loop waits for data: {'; '.join(parts)}; {verdict_text}."]


def cold_cost(frame: pd.DataFrame, confidence: float = 0.95) -> list:
    """Per loader and data set, the total time (model none) with a cold page cache against a warm one."""
    rows = default_store_rows(select(per_repeat(frame), model="none", num_workers=0, world_size=1))
    cold = rows[rows["cache_state"] == "cold"]
    if cold.empty:
        return ["The cost of a cold page cache was not measured (no cold run with --model none in these results)."]
    sentences = []
    for (dataset, loader, store), _ in cold.groupby(["dataset", "loader", "store"], sort=True):
        keys = {"dataset": dataset, "loader": loader, "store": store}
        warm_mean, cold_mean, p = welch_between(rows, "total_train_s", {**keys, "cache_state": "warm"},
                                                {**keys, "cache_state": "cold"})
        if not math.isfinite(warm_mean):
            sentences.append(f"{loader} ({store}) on {dataset}: cold {fmt(cold_mean)}, warm not measured.")
            continue
        sentences.append(f"{loader} ({store}) on {dataset}: a cold cache takes {fmt(cold_mean)} against "
                         f"{fmt(warm_mean)} warm ({fmt(cold_mean - warm_mean)} more; {verdict(p, confidence)}).")
    return sentences


def codec_cost(frame: pd.DataFrame, store_bytes: pd.DataFrame, confidence: float = 0.95) -> list:
    """Each image codec read by ``files`` (model none, warm) against JPEG: its load time and its bytes on
    disk (``store_bytes``: dataset, scale, store, bytes_on_disk; e.g. the study's stores.csv)."""
    rows = select(per_repeat(frame), loader="files", model="none", cache_state="warm", num_workers=0,
                  world_size=1)
    if rows.empty or rows["store"].nunique() < 2:
        return ["The codecs' cost against their disk savings was not measured (files on fewer than two "
                "codecs with model none)."]
    sizes = {} if store_bytes is None else {(r.dataset, round(r.scale, 6), r.store): r
                                            for r in store_bytes.itertuples()}
    sentences = []
    for (dataset, scale), part in rows.groupby(["dataset", "scale"], sort=True):
        base = "files-jpeg" if "files-jpeg" in set(part["store"]) else sorted(part["store"])[0]
        for store in sorted(set(part["store"]) - {base}):
            mine, theirs, p = welch_between(part, "total_train_s", {"store": store}, {"store": base})
            disk = disk_text(*(sizes.get((dataset, round(scale, 6), name)) for name in (store, base)))
            sentences.append(f"{dataset} (scale {scale:g}), {store} against {base}: load time {fmt(mine)} "
                             f"against {fmt(theirs)} ({verdict(p, confidence)}); {disk}.")
    return sentences


def disk_text(mine, base) -> str:
    """The files' bytes (their sizes) and the blocks they take on disk, against the reference store's."""
    if mine is None or base is None:
        return "bytes on disk not recorded"
    return (f"{mine.bytes_apparent / 2**20:.2f} MiB of files against {base.bytes_apparent / 2**20:.2f} MiB "
            f"({mine.bytes_apparent / base.bytes_apparent:.2f}×), taking {mine.bytes_on_disk / 2**20:.2f} MiB "
            f"of disk blocks against {base.bytes_on_disk / 2**20:.2f} MiB")


def precision(frame: pd.DataFrame, confidence: float = 0.95) -> list:
    """float16 against float32 (and uint8) in bytes, load time, total training time and accuracy."""
    summary = precision_summary(frame, confidence)
    rows = select(per_repeat(frame), loader="numpy", cache_state="warm", num_workers=0, world_size=1)
    if summary.empty or not {"npy-float16", "npy-float32"} <= set(summary["store"]):
        return ["float16 against float32 was not measured (numpy on npy-float16 and npy-float32)."]
    sentences = []
    for dataset in datasets_of(summary):
        part = summary[summary["dataset"] == dataset].set_index("store")
        if not {"npy-float16", "npy-float32"} <= set(part.index):
            sentences.append(f"{dataset}: float16 against float32 not measured.")
            continue
        half, full = part.loc["npy-float16"], part.loc["npy-float32"]
        claims = [f"{half['bytes_mb']:.2f} MiB of image arrays against {full['bytes_mb']:.2f} MiB (scale "
                  f"{half['scale']:g})"]
        for label, model, column, key in (("load time", "none", "total_train_s", "load_s"),
                                          ("total training time", "small", "total_train_s", "train_s"),
                                          ("validation accuracy", "small", "val_acc", "val_acc")):
            if half[key + "_scale"] != full[key + "_scale"] and not pd.isna(full[key + "_scale"]):
                claims.append(f"{label} measured at different scales ({half[key + '_scale']:g} and "
                              f"{full[key + '_scale']:g}): not compared")
                continue
            keys = {"dataset": dataset, "model": model, "scale": half[key + "_scale"]}
            _, _, p = welch_between(rows, column, {**keys, "store": "npy-float16"},
                                    {**keys, "store": "npy-float32"})
            unit = "" if key == "val_acc" else " s"
            at = "" if pd.isna(half[key + "_scale"]) else f" (scale {half[key + '_scale']:g})"
            claims.append(f"{label}{at} {fmt(half[key], unit)} against {fmt(full[key], unit)}"
                          + ("" if not (math.isfinite(half[key]) and math.isfinite(full[key])) else
                             f" ({verdict(p, confidence)})"))
        sentences.append(f"{dataset}: float16 against float32: " + "; ".join(claims) + ".")
    return sentences


def workers_and_ranks(frame: pd.DataFrame, confidence: float = 0.95) -> list:
    """num_workers 2 against 0 (model none, warm, one process) and 2 ranks against 1 (model small, warm)."""
    rows = per_repeat(frame)
    sentences = []
    for axis, more, fixed in (("num_workers", 2, {"model": "none", "cache_state": "warm", "world_size": 1}),
                              ("world_size", 2, {"model": "small", "cache_state": "warm", "num_workers": 0})):
        part = select(rows, **fixed)
        wide = part[part[axis] == more]
        name = "2 workers against 0" if axis == "num_workers" else "2 ranks against 1"
        if wide.empty:
            sentences.append(f"{name}: not measured.")
            continue
        for (dataset, loader, store), _ in wide.groupby(["dataset", "loader", "store"], sort=True):
            keys = {"dataset": dataset, "loader": loader, "store": store}
            base = 0 if axis == "num_workers" else 1
            many, one, p = welch_between(part, "total_train_s", {**keys, axis: more}, {**keys, axis: base})
            sentences.append(f"{name}, {loader} ({store}) on {dataset}: {fmt(many)} against {fmt(one)} in total "
                             f"({percent(many, one)}; {verdict(p, confidence)})."
                             if math.isfinite(one) else f"{name}, {loader} on {dataset}: the baseline was "
                             "not measured.")
    return sentences


def expectations(frame: pd.DataFrame, confidence: float = 0.95) -> list:
    """Each of :data:`EXPECTATIONS` per data set: held, did not hold, or not measured (with the test)."""
    rows = select(per_repeat(frame), cache_state="warm", num_workers=0, world_size=1)
    sentences = []
    for label, first, second, column in EXPECTATIONS:
        model = "small"
        for dataset in datasets_of(frame):
            keys = {"dataset": dataset, "model": model}
            low, high, p = welch_between(rows, column, {**keys, **first}, {**keys, **second})
            if not (math.isfinite(low) and math.isfinite(high)):
                sentences.append(f"Expected: {label}. {dataset}: not measured.")
                continue
            from thesislib.report.statistics import significant

            held = "held" if low < high and significant(p, confidence) else \
                "did not hold (the opposite is significant)" if significant(p, confidence) else \
                "is not shown (the difference is within noise)"
            sentences.append(f"Expected: {label}. {dataset}: {fmt(low)} against {fmt(high)} ({column}); "
                             f"the expectation {held}, {verdict(p, confidence)}.")
    return sentences


def further_research(frame: pd.DataFrame) -> list:
    """What the results leave open: GPU paths, GPUDirect Storage, larger data sets (from what is absent)."""
    devices = set(frame["device"].astype(str))
    gpu = any(d.startswith("cuda") for d in devices)
    biggest = max((DATASETS[d].size for d in set(frame["dataset"]) if d in DATASETS), default=0)
    scales = per_repeat(frame).groupby("dataset")["scale"].max()
    reduced = [f"{d} at scale {s:g}" for d, s in scales.items() if s < 1]
    return [
        ("GPU paths (cupy, dali, numpy/memory on cuda): " + ("measured here; see the GPU rows." if gpu else
         "not measured on this machine (no GPU); scripts/gpu_study.sh runs them on one CUDA GPU.")),
        "GPUDirect Storage (dali/kvikio reading straight into GPU memory): " + (
            "see the GPU rows." if gpu else "not measured; it needs a GPU and a GDS-capable file system."),
        (f"Larger data sets: the largest image measured is {biggest}×{biggest}"
         + (f"; these results cover only {', '.join(reduced)}, so full-size runs remain to be made"
            if reduced else "") + "; data sets larger than memory (where the page cache cannot hold the "
         "store) would show the cold-cache costs on every epoch."),
    ]


def stall_by_size(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean stall share (model small) per loader and data set, data sets ordered by image size (06's figure)."""
    rows = thesis_rows(frame)
    table = rows.pivot_table(index="loader", columns="dataset", values="stall_pct", aggfunc="mean")
    return table.reindex(columns=[d for d in datasets_of(rows) if d in table.columns])


__all__ = ["PRECISION_STORES", "bottleneck", "codec_cost", "cold_cost", "expectations", "fastest_per_dataset",
           "further_research", "precision", "stall_by_size", "workers_and_ranks"]
