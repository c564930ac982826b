"""Means, Student-t confidence intervals and Welch tests over the repeats."""

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats



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


def welch_p(first, second) -> float | None:
    """Welch's t-test p-value of two samples; None with fewer than two values in one, NaN if neither varies."""
    first, second = (pd.Series(v, dtype=float).dropna() for v in (first, second))
    if len(first) < 2 or len(second) < 2:
        return None
    if first.std() == 0 and second.std() == 0:
        return math.nan
    with warnings.catch_warnings():  # nearly equal samples (accuracies of one seed): SciPy warns, p stays valid
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
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
