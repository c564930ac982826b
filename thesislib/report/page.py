"""The Markdown page that puts the environment, the reading, the tables and the figures together."""

from pathlib import Path

import pandas as pd

from thesislib.atomic import write_text
from thesislib.paths import project_path
from thesislib.report.figures import FIGURES, figure_names
from thesislib.report.reading import reading
from thesislib.report.statistics import few_repeats
from thesislib.report.tables import metric_table, table_caption, metrics_present


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
