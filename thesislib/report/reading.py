"""The written reading: which method wins where, by how much, and whether each lead is real."""

import numpy as np
import pandas as pd

from thesislib.report.columns import LOADER_ORDER, METRIC_BY_COLUMN
from thesislib.report.load import method_order, dataset_order, cache_states
from thesislib.report.statistics import summarize, welch_p, significant, verdict


def reading(frame: pd.DataFrame, confidence: float = 0.95) -> str:
    """A short written reading: which method wins where, by how much, and whether each lead is real. Each
    data set's line leads with the total training time and the data wait per epoch (the thesis's headline:
    time, not speed); throughput, stall and memory follow.

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


def _values(rows: pd.DataFrame, column: str, method: str) -> pd.Series:
    return rows.loc[rows["method"] == method, column].dropna()


def _ranked(rows: pd.DataFrame, column: str, confidence: float, best_first_high: bool) -> pd.DataFrame:
    summary = summarize(rows, column, confidence).dropna(subset=["mean"])
    return summary.sort_values("mean", ascending=not best_first_high, kind="stable").reset_index(drop=True)


def _reading_dataset(rows: pd.DataFrame, where: str, confidence: float) -> str:
    speed = _ranked(rows, "images_per_s", confidence, best_first_high=True)
    if len(speed) == 1:
        return f"{where}: only {speed['method'][0]} was run ({speed['mean'][0]:,.0f} images/s)."
    parts = [_reading_least(rows, "total_train_s", confidence, lambda v: f"{v:.3g} s"),  # the headline:
             _reading_least(rows, "data_s_mean", confidence, lambda v: f"{v:.3g} s"),    # time, not speed
             _reading_speed(rows, speed, confidence),
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
