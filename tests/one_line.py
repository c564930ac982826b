"""What every command-line error test checks: exit status 2 and one line on stderr, no traceback."""


def one_line_error(capsys, status, *fragments) -> str:
    """The one stderr line of a failed command (``status`` must be 2), checked to hold every fragment."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
