"""The command line: help that teaches (every option with its default and a sentence, an overview without a
command, the README's table saying the same), options checked before any work (one line, exit 2), and
libraries' own lines kept off stderr."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from one_line import one_line_error

from thesislib import cli
from thesislib.cli import build_parsers, main
from thesislib.errors import ThesisError
from thesislib.models import check_model_name, check_optimizer

ROOT = Path(__file__).resolve().parents[1]


def subcommands() -> dict:
    return build_parsers()[1]


def options(parser) -> list:
    """The options a parser takes, but --help (argparse lists its actions only in ``_actions``)."""
    return [action for action in parser._actions if action.option_strings and action.dest != "help"]


# ------------------------------------------------------------------------------------------------ help
def test_no_command_lists_every_command_with_a_line_and_an_example(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name, line, example in cli.COMMANDS_HELP:
        assert re.search(rf"^  {name} +{re.escape(line)}$", out, re.M), name
        assert f"python -m thesislib {example}" in out
    assert set(subcommands()) == {name for name, _, _ in cli.COMMANDS_HELP}


@pytest.mark.parametrize("command", ["prepare", "bench", "verify", "formats", "report"])
def test_every_option_has_a_sentence_and_shows_its_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in options(subcommands()[command]):
        assert action.help and len(action.help) > 10, action.option_strings
        flag = action.option_strings[0]
        if action.required:
            assert f"{action.help} (required)" in text, flag
        elif action.default not in (None, False):
            assert f"{action.help} (default: {cli.default_text(action.default)})" in text, flag
    assert "example: python -m thesislib" in text


def readme_command_table() -> dict:
    """README's command table: {command: set of --options}."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        match = re.match(r"\| `(\w+)` \|(.*)\|(.*)\|\s*$", line)
        if match:
            table[match.group(1)] = set(re.findall(r"--[a-z][a-z-]*", match.group(2)))
    return table


def test_readme_command_table_and_help_name_the_same_commands_and_options():
    readme = readme_command_table()
    helped = {name: {flag for action in options(parser) for flag in action.option_strings}
              for name, parser in subcommands().items()}
    assert set(readme) == set(helped)
    for name in helped:
        assert readme[name] == helped[name], (name, readme[name] ^ helped[name])


# ------------------------------------------------------------------------------------ bad options (14)
@pytest.mark.parametrize("option,value,fragment", [
    ("--batch-size", str(2**64), "--batch-size"),
    ("--batch-size", "99999999999999999999999", "--batch-size"),
    ("--model", "sleep:inf", "sleep:MS"),
    ("--model", "sleep:1e400", "sleep:MS"),
    ("--lr", "inf", "--lr"),
    ("--lr", "nan", "--lr"),
    ("--num-workers", "1000", "--num-workers"),
    ("--seed", "-1", "--seed"),
    ("--epochs", str(2**70), "--epochs"),
])
def test_bench_option_out_of_range_is_one_line(option, value, fragment, capsys, tmp_path):
    status = main(["bench", "--loader", "numpy", "--dataset", "cifar10", "--data-dir", str(tmp_path),
                   option, value])
    one_line_error(capsys, status, fragment)


def test_num_workers_limit_is_stated_and_at_most_64():
    assert 1 <= cli.max_workers() <= 64


def test_prepare_negative_seed_is_one_line(capsys, tmp_path):
    one_line_error(capsys, main(["prepare", "--dataset", "cifar10", "--seed", "-1", "--data-dir",
                                 str(tmp_path)]), "--seed")


def test_library_refuses_an_infinite_sleep_and_learning_rate():
    with pytest.raises(ThesisError, match="sleep:MS"):
        check_model_name("sleep:inf")
    with pytest.raises(ThesisError, match="--lr"):
        check_optimizer("sgd", float("inf"))
    assert check_model_name("sleep:20") == "sleep:20"


def test_prepare_into_a_data_dir_that_is_a_file_is_one_line_before_any_work(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    status = main(["prepare", "--dataset", "cifar10", "--scale", "0.005", "--stores", "npy-uint8",
                   "--data-dir", str(tmp_path / "file" / "data")])
    one_line_error(capsys, status, "--data-dir", "is a file")


def test_report_out_that_is_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, main(["report", "--out", str(tmp_path / "file")]), "--out", "is a file")


def test_formats_out_under_a_file_is_one_line_before_encoding(capsys, tmp_path, monkeypatch):
    from thesislib import imageformats

    encoded = []
    monkeypatch.setattr(imageformats, "format_table", lambda *a: encoded.append(1))
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, main(["formats", "--out", str(tmp_path / "file" / "t.csv")]), "--out")
    one_line_error(capsys, main(["formats", "--out", str(tmp_path)]), "is a folder")
    assert not encoded


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_prepare_into_a_read_only_folder_is_one_line(capsys, tmp_path):
    tmp_path.chmod(0o500)
    try:
        one_line_error(capsys, main(["prepare", "--dataset", "cifar10", "--data-dir", str(tmp_path / "d")]),
                       "read-only")
    finally:
        tmp_path.chmod(0o700)


def test_verify_of_a_missing_store_is_one_line(capsys, tmp_path):
    one_line_error(capsys, main(["verify", "--dataset", "cifar10", "--store", "hdf5", "--data-dir",
                                 str(tmp_path)]), "hdf5")


# ------------------------------------------------------------------------------- libraries' lines (15)
def damaged_tiff(path: Path) -> None:
    """A 32x32 TIFF whose deflate stream is broken: libtiff prints "ZIPDecode: ..." on its own."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 7).save(buffer, format="TIFF",
                                                              compression="tiff_adobe_deflate")
    data = bytearray(buffer.getvalue())
    data[12:140] = bytes(range(128))
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_libtiffs_own_line_does_not_reach_stderr_beside_the_one_line(tmp_path):
    from thesislib.prepare import prepare

    prepare("cifar10", source="synthetic", scale=0.005, stores=["files-tiff"], seed=0, data_dir=tmp_path,
            progress=False)
    victim = sorted((tmp_path / "cifar10" / "files-tiff" / "train").rglob("*.tiff"))[0]
    damaged_tiff(victim)
    done = subprocess.run([sys.executable, "-m", "thesislib", "bench", "--loader", "files", "--store",
                           "files-tiff", "--dataset", "cifar10", "--scale", "0.005", "--model", "none",
                           "--data-dir", str(tmp_path), "--results", str(tmp_path / "r.csv")],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and victim.name in lines[0], done.stderr


def test_warnings_and_c_level_lines_are_kept_off_stderr_while_python_lines_pass(tmp_path):
    script = ("import os, sys, warnings\n"
              "from PIL import Image\n"
              "from thesislib.cli import quiet_libraries\n"
              f"Image.new('RGB', (64, 64)).save({str(tmp_path / 'a.png')!r})\n"
              "Image.MAX_IMAGE_PIXELS = 3000\n"
              "with quiet_libraries():\n"
              f"    Image.open({str(tmp_path / 'a.png')!r})\n"   # DecompressionBombWarning
              "    os.write(2, b'[ERROR] a C library line\\n')\n"
              "    print('progress line', file=sys.stderr)\n"
              "print('after', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stderr.splitlines() == ["progress line", "after"], done.stderr


@pytest.mark.slow
def test_killing_bench_leaves_no_orphan_worker(prepared_cifar10, tmp_path):
    """A bench killed with SIGKILL (as the OOM killer does) leaves no loader worker alive for long."""
    import signal
    import time

    import psutil

    # torchvision: a loader whose workers are processes (numpy's are threads of the bench process)
    bench = subprocess.Popen([sys.executable, "-m", "thesislib", "bench", "--loader", "torchvision", "--store",
                              "files-png", "--dataset", "cifar10", "--scale", "0.005", "--data-dir",
                              str(prepared_cifar10), "--results",
                              str(tmp_path / "r.csv"), "--num-workers", "2", "--model", "sleep:200", "--epochs",
                              "100", "--batch-size", "8", "--quiet"], cwd=ROOT, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    parent, workers = psutil.Process(bench.pid), []
    end = time.monotonic() + 120
    while len(workers) < 2 and time.monotonic() < end and bench.poll() is None:
        workers = parent.children(recursive=True)
        time.sleep(0.2)
    assert len(workers) >= 2
    bench.send_signal(signal.SIGKILL)
    bench.wait()
    gone, alive = psutil.wait_procs(workers, timeout=60)
    for worker in alive:
        worker.kill()
    assert not alive


def test_a_message_quoting_a_librarys_lines_is_still_printed_as_one_line(capsys, monkeypatch):
    def fail(args):
        raise ThesisError("cannot read data.h5 (HDF5-DIAG: Error detected\n  #000: H5F.c line 1 in H5Fopen)\n: "
                          "delete the store and prepare it again")

    monkeypatch.setitem(cli.COMMANDS, "env", fail)
    one_line_error(capsys, main(["env"]), "HDF5-DIAG: Error detected #000: H5F.c", "prepare it again")


def test_report_html_of_a_folder_without_a_run_is_one_line(capsys, tmp_path):
    one_line_error(capsys, main(["report", "--html", "--run", str(tmp_path)]), "05_results.ipynb", "make run")


def test_an_unexpected_error_keeps_the_library_lines_that_may_explain_it():
    script = ("import os\n"
              "from thesislib.cli import quiet_libraries\n"
              "with quiet_libraries():\n"
              "    os.write(2, b'libfoo: the real cause\\n')\n"
              "    raise RuntimeError('a bug')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1 and "libfoo: the real cause" in done.stderr and "RuntimeError: a bug" in done.stderr
