"""Writing a file so that no reader ever sees it half-written: a temporary file beside it, renamed onto it."""

import os
import tempfile
from pathlib import Path


def write_atomic(path, write) -> Path:
    """Call ``write(temporary_path)`` in ``path``'s folder, then rename the result onto ``path``.

    If ``write`` fails, ``path`` is left as it was and the temporary file is removed. The file gets the
    usual permissions (0644; ``mkstemp`` alone would make it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    os.chmod(temporary, 0o644)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_text(path, text: str) -> Path:
    """``text`` (UTF-8) into ``path``, atomically."""
    return write_atomic(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
