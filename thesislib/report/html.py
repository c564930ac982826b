"""A run's results as one self-contained HTML page: notebooks 05 (and 06, when the run has it) of a run
folder, their outputs only, figures embedded as data URIs, so that the page can be read and shared without
Jupyter (``python -m thesislib report --html``, ``make report``)."""

from pathlib import Path

from thesislib.atomic import write_text
from thesislib.errors import ThesisError
from thesislib.paths import PROJECT_ROOT

NOTEBOOKS = ("05_results.ipynb", "06_conclusions.ipynb")   # in this order; the first one is required
PAGE = "report.html"
TEMPLATES = Path(__file__).with_name("templates")   # page.html.j2: no scripts fetched from the internet


def newest_run(runs=None) -> Path:
    """The newest folder under ``runs/`` (their names are timestamps) whose notebooks include 05."""
    runs = Path(runs) if runs is not None else PROJECT_ROOT / "runs"
    found = sorted(path.parent.parent for path in runs.glob(f"*/notebooks/{NOTEBOOKS[0]}"))
    if not found:
        raise ThesisError(f"no run folder with notebooks/{NOTEBOOKS[0]} under {runs}: run `make run` first, "
                          "or pass --run DIR")
    return found[-1]


def run_notebooks(run_dir: Path) -> list:
    """The paths of the run's notebooks 05 and (if present) 06; a ThesisError without 05."""
    folder = run_dir / "notebooks"
    if not (folder / NOTEBOOKS[0]).is_file():
        raise ThesisError(f"run folder {run_dir} has no notebooks/{NOTEBOOKS[0]}: pass the folder `make run` "
                          "made (runs/<timestamp>), or run `make run` first")
    return [folder / name for name in NOTEBOOKS if (folder / name).is_file()]


def joined_notebook(paths: list):
    """One notebook holding the cells of every notebook in ``paths``, in order."""
    import nbformat

    notebooks = []
    for path in paths:
        try:
            notebooks.append(nbformat.read(path, as_version=4))
        except Exception as exc:  # nbformat raises JSON, validation and OS errors alike
            raise ThesisError(f"notebook {path} cannot be read ({type(exc).__name__}: {exc}): rerun the step "
                              "that wrote it (`make run`)") from exc
    joined = notebooks[0]
    for notebook in notebooks[1:]:
        joined.cells.extend(notebook.cells)
    return joined


def to_html(notebook, resource_dir: Path, title: str) -> str:
    """The notebook as HTML without its code, images (outputs and Markdown) embedded as data URIs."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_template_paths=[str(TEMPLATES)],
                            template_file="page.html.j2", embed_images=True, exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    notebook.metadata["title"] = title
    html, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"path": str(resource_dir),
                                                                            "name": title}})
    return html


def html_page(run_dir=None) -> Path:
    """Write ``<run>/report.html`` from the run's notebooks 05 and 06 (the newest run by default);
    return its path."""
    run_dir = Path(run_dir) if run_dir is not None else newest_run()
    if not run_dir.is_dir():
        raise ThesisError(f"--run {run_dir} is not a folder: pass a run folder (runs/<timestamp>)")
    paths = run_notebooks(run_dir)
    html = to_html(joined_notebook(paths), paths[0].parent, f"Results of run {run_dir.name}")
    return write_text(run_dir / PAGE, html)
