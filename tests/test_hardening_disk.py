"""A full disk while ``prepare`` writes (issue 11, item 10), on a real small tmpfs (the tests skip where
mounting one is not permitted): a store that cannot fit is refused before writing, a disk that fills while
writing gives one line and leaves no temporary folder, and the npy writer raises ENOSPC instead of dying of
SIGBUS."""

import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from prepare_runs import ENV, error_lines, leftovers, prepare_command


# --------------------------------------------------------------------------------------- 10: full disk
@contextmanager
def small_disk(folder, size: str):
    """A tmpfs of ``size`` mounted at ``folder`` (skips the test where mounting is not permitted)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the full-disk tests need root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_prepare_that_cannot_fit_says_so_in_one_line_before_writing(tmp_path):
    with small_disk(tmp_path / "disk", "1M") as disk:
        result = subprocess.run(prepare_command(disk, "--dataset", "cifar10", "--scale", "0.01", "--stores",
                                                "npy-uint8"), capture_output=True, text=True, timeout=120, env=ENV)
        lines = error_lines(result.stderr)
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "cifar10/npy-uint8 needs about 1.8 MiB" in lines[0] and "--data-dir" in lines[0]
        assert leftovers(disk / "cifar10") == [] and not (disk / "cifar10" / "npy-uint8").exists()


@pytest.mark.parametrize("store", ["zarr", "files-png"])
def test_a_disk_that_fills_while_writing_gives_one_line_and_no_temporary_folder(tmp_path, store):
    # 220 Tiny ImageNet images: about 0.9 MiB by the (lower) estimate, 1.5 MiB and more once written
    with small_disk(tmp_path / "disk", "1M") as disk:
        result = subprocess.run(prepare_command(disk, "--dataset", "tinyimagenet", "--scale", "0.002",
                                                "--stores", store), capture_output=True, text=True, timeout=180,
                                env=ENV)
        lines = error_lines(result.stderr)
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert f"disk full while writing {disk}/tinyimagenet/{store}" in lines[0]
        assert "Traceback" not in result.stderr and "Task was destroyed" not in result.stderr
        time.sleep(1)  # a write still running would re-create the temporary folder now
        assert leftovers(disk / "tinyimagenet") == [] and not (disk / "tinyimagenet" / store).exists()


def test_the_npy_writer_reports_a_full_disk_as_an_error_not_a_crash(tmp_path):
    # a writable memory map dies of SIGBUS on a full tmpfs; the writer must raise ENOSPC instead
    script = ("import sys, numpy as np; from thesislib.stores import STORES, npy; from pathlib import Path\n"
              "images = np.zeros((600, 32, 32, 3), np.uint8)\n"
              "try:\n    npy.write_split(Path(sys.argv[1]), STORES['npy-uint8'], 'train', images, "
              "np.zeros(600, np.int64))\n"
              "except OSError as exc:\n    print(exc.errno)")
    with small_disk(tmp_path / "disk", "1M") as disk:
        result = subprocess.run([sys.executable, "-c", script, str(disk)], capture_output=True, text=True,
                                timeout=120, env=ENV)
    assert result.returncode == 0 and result.stdout.strip() == str(28), (result.returncode, result.stderr)
