"""Where the project's folders are, so that notebooks and commands agree whatever their working folder."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "data"
FIGURES_DIR = PROJECT_ROOT / "figures"
RESULTS_DIR = PROJECT_ROOT / "results"


def project_path(path) -> Path:
    """An absolute path as given; a relative one is taken from the project root (not the working folder)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path
