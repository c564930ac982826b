"""A metric's table (methods x datasets, mean ± half-width) as Markdown and LaTeX."""

import math

import numpy as np
import pandas as pd

from thesislib.atomic import write_text
from thesislib.paths import project_path
from thesislib.report.columns import METRICS, METRIC_BY_COLUMN
from thesislib.report.load import method_order, dataset_order, cache_states
from thesislib.report.statistics import summarize, few_repeats, significant


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


def metrics_present(frame: pd.DataFrame) -> list:
    """The metrics worth a table: the protocol's, and the page-cache share when bench recorded it."""
    return [m for m in METRICS if m.column != "cached_pct" or frame["cached_pct"].notna().any()]


# One pass (str.translate), so that the braces of \textbackslash{} are not escaped again.
_LATEX_SPECIAL = str.maketrans({"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                **{char: "\\" + char for char in "&%$#_{}"}})


def latex_escape(text: str) -> str:
    return str(text).translate(_LATEX_SPECIAL)


def to_latex(table: pd.DataFrame, caption: str, label: str, align: str = "r") -> str:
    """A booktabs ``table`` environment; ``±`` becomes ``$\\pm$`` and names are escaped."""
    latex = table.rename(index=latex_escape, columns=latex_escape)
    latex = latex.map(lambda cell: latex_escape(cell).replace("±", r"$\pm$").replace("–", "--"))
    latex = latex.reset_index(names=latex_escape(table.index.name or ""))
    return latex.to_latex(caption=latex_escape(caption).replace("±", r"$\pm$").replace("–", "--"),
                          label=label, escape=False, index=False, position="htbp",
                          column_format="l" + align * len(table.columns))


def write_table(table: pd.DataFrame, out_dir, name: str, caption: str, align: str = "r") -> list:
    """``name.md`` (caption, then the table) and ``name.tex`` (a LaTeX table) under ``out_dir``."""
    out_dir = project_path(out_dir)
    markdown = f"{caption}\n\n{table.to_markdown()}\n"
    return [write_text(out_dir / f"{name}.md", markdown),
            write_text(out_dir / f"{name}.tex", to_latex(table, caption, f"tab:{name}", align))]


ENV_CAPTION = "Hardware and software of the runs (section 2.6)"


def write_tables(frame: pd.DataFrame, env: pd.DataFrame, out_dir, confidence: float = 0.95,
                 note: str = "") -> list:
    """Every metric's table (``05_table_<column>``) and the environment table, as .md and .tex."""
    written = []
    for metric in metrics_present(frame):
        written += write_table(metric_table(frame, metric.column, confidence), out_dir,
                               f"05_table_{metric.column}", table_caption(frame, metric.column, confidence, note))
    return written + write_table(env, out_dir, "05_environment", f"{ENV_CAPTION}{note}.", align="l")
