"""The one error a user sees.

Raise :class:`ThesisError` from the place that knows the file or parameter, with a message that names the
problem and the fix, chained ``from`` the cause. The command line prints it as one line and exits 2.
"""


class ThesisError(Exception):
    """Bad input or missing data: the message names the file or parameter and what to do."""

    def _render_traceback_(self) -> list:
        """IPython's protocol for how an exception is shown: in a notebook (and so at the end of papermill's
        failure message and in ``make run``'s summary) the command line's one line, not a traceback."""
        return [self.one_line()]

    def one_line(self) -> str:
        """``error: <message>`` on one line (a library's multi-line text quoted in it joined by spaces)."""
        return "error: " + " ".join(line.strip() for line in str(self).splitlines() if line.strip())


def choose(kind: str, name: str, valid) -> str:
    """Return ``name`` if it is one of ``valid``, else raise a ThesisError listing the valid names."""
    valid = list(valid)
    if name not in valid:
        raise ThesisError(f"unknown {kind} {name!r}: choose one of {', '.join(valid)}")
    return name

