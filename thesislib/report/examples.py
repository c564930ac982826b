"""Invented example rows in the results format (not measurements), for the stored notebook outputs."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from thesislib.atomic import write_text
from thesislib.datasets import DATASETS
from thesislib.paths import project_path
from thesislib.report.columns import RESULT_COLUMNS, OPTIONAL_COLUMNS
from thesislib.report.environment import env_path


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
