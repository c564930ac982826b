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

One module per job: :mod:`~thesislib.report.load` (reading results), :mod:`~thesislib.report.statistics`,
:mod:`~thesislib.report.tables`, :mod:`~thesislib.report.environment`, :mod:`~thesislib.report.figures`,
:mod:`~thesislib.report.reading` (the written reading), :mod:`~thesislib.report.page` (the Markdown page),
:mod:`~thesislib.report.html` (a run's notebooks as one HTML page) and :mod:`~thesislib.report.examples`
(invented example rows). Everything the notebooks and tests use is importable from here; the measured
study's tables (:mod:`~thesislib.report.study`, notebook 05) and its generated conclusions
(:mod:`~thesislib.report.conclusions`, notebook 06) are imported as submodules.
"""

from thesislib.errors import ThesisError
from thesislib.report.columns import (CACHE_ORDER, CONDITION_COLUMNS, LOADER_ORDER, METRIC_BY_COLUMN,  # noqa: F401
                                      METRICS, OPTIONAL_COLUMNS, RESULT_COLUMNS, TEXT_COLUMNS, Metric)
from thesislib.report.environment import env_path, environment_table, read_environments  # noqa: F401
from thesislib.report.examples import example_results, write_example_results  # noqa: F401
from thesislib.report.figures import (FIGURES, epoch_split_figure, figure_names, memory_figure,  # noqa: F401
                                      memory_rows, save_figure, throughput_figure, warm_cold_figure,
                                      write_figure, write_figures)
from thesislib.report.html import html_page  # noqa: F401
from thesislib.report.load import (add_labels, cache_states, check_versions, dataset_order,  # noqa: F401
                                   method_order, parse_paths, read_results)
from thesislib.report.page import write_report_page
from thesislib.report.reading import reading  # noqa: F401
from thesislib.report.statistics import (few_repeats, significant, summarize, t_halfwidth,  # noqa: F401
                                         t_interval, verdict, welch_p)
from thesislib.report.tables import (ENV_CAPTION, format_cell, metric_table, metrics_present,  # noqa: F401
                                     latex_escape, table_caption, to_latex, write_table, write_tables)
from thesislib.results import COLUMNS  # noqa: F401


def build_report(results_paths, out_dir, confidence: float = 0.95, allow_mixed: bool = False,
                 note: str = "") -> list:
    """Read the results; write every table (.md, .tex), figure (.png, .pdf) and ``05_report.md``.

    ``allow_mixed`` reports rows of different thesislib versions / git commits together instead of
    refusing; ``note`` (e.g. " (example rows, invented)") is added to every figure title, table caption
    and the report page's title. Returns the paths written.
    """
    check_confidence(confidence)
    frame = read_results(results_paths, allow_mixed)
    env = environment_table(read_environments(results_paths, frame), frame)
    written = write_tables(frame, env, out_dir, confidence, note)
    figures = write_figures(frame, out_dir, confidence, note)
    return written + figures + [write_report_page(frame, env, out_dir, confidence, figure_names(figures), note)]


def check_confidence(confidence) -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ThesisError(f"confidence must be a number between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return float(confidence)
