"""The columns the report reads and the metrics it tables and draws."""

from dataclasses import dataclass

import numpy as np

from thesislib.loaders import loader_order
from thesislib.results import CONTRACT_COLUMNS, EXTRA_COLUMNS

RESULT_COLUMNS = CONTRACT_COLUMNS   # a results file must have these
# Written by newer versions of bench; an older file without them reads as warm runs of unknown version,
# of one process (world_size 1, rank 0), without a cache copy, with exact JPEG decodes.
OPTIONAL_COLUMNS = {"cache_state": "warm", "cached_pct": np.nan, "thesislib_version": None, "world_size": 1,
                    "rank": 0, "cache_copy_s": np.nan, "cache_copy_bytes": np.nan,
                    "store_location": "", "decode": "exact"}
assert tuple(OPTIONAL_COLUMNS) == EXTRA_COLUMNS, "results.EXTRA_COLUMNS and the report's defaults differ"

TEXT_COLUMNS = ("run_id", "started_at", "git_commit", "host", "loader", "store", "dataset", "precision",
                "device", "model", "cache_state", "thesislib_version", "store_location", "decode")
LOADER_ORDER = tuple(loader_order())  # the format registry's order (thesislib.loaders)
CACHE_ORDER = ("warm", "cold")


# Settings that, when they differ within one table cell, are added to the row label to keep cells apart
# (rows of two machines, or two models, are never pooled into one mean).
CONDITION_COLUMNS = ("host", "model", "device", "precision", "epochs", "batch_size", "num_workers", "scale",
                     "world_size", "decode")


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    unit: str
    better: str = ""   # "higher", "lower" or "" (neither)

    @property
    def label(self) -> str:
        return f"{self.title} ({self.unit})" if self.unit else self.title
# Training time first, data wait next (the thesis's headline: time, not speed); throughput after them.
METRICS = (
    Metric("total_train_s", "training time", "s", "lower"),
    Metric("data_s_mean", "data wait per epoch", "s", "lower"),
    Metric("epoch_s_mean", "epoch time", "s", "lower"),
    Metric("stall_pct", "stall", "% of epoch", "lower"),
    Metric("images_per_s", "throughput", "images/s", "higher"),
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
