"""Writes under concurrency and interruption (issue 11, items 9 and 11), with real ``python -m thesislib
prepare`` processes: two runs of one store end with one complete store, Ctrl-C ends a conversion within
seconds and removes its temporary folder, and leftovers of dead processes are removed (full disks:
``test_hardening_disk.py``)."""

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from thesislib.prepare import prepare
from thesislib.stores import open_store, verify_store

from prepare_runs import ENV, dead_pid, leftovers, prepare_command


# ---------------------------------------------------------------------- 9: two prepares of one store
def test_two_concurrent_prepares_of_one_store_end_with_one_complete_store(tmp_path):
    dataset_dir = tmp_path / "cifar10"
    dataset_dir.mkdir()
    args = ("--dataset", "cifar10", "--scale", "0.01", "--stores", "zarr")
    with open(dataset_dir / ".zarr.lock", "a") as lock:   # both start while the store is busy
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = [subprocess.Popen(prepare_command(tmp_path, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=ENV) for _ in range(2)]
        for run in runs:
            threading.Timer(180, run.kill).start()  # a run that never says it waits must not hang the suite
        waiting = 0
        for run in runs:  # each says in one line that it waits
            for line in run.stderr:
                if "another prepare is building this store; waiting" in line:
                    waiting += 1
                    break
        fcntl.flock(lock, fcntl.LOCK_UN)
    results = [(run.wait(timeout=180), run.stdout.read() + run.stderr.read()) for run in runs]
    assert waiting == 2 and [status for status, _ in results] == [0, 0], results
    assert sum("prepared by another run meanwhile, skipped" in err for _, err in results) == 1, results
    store = open_store(tmp_path, "cifar10", "zarr")
    assert verify_store(store, progress=False) > 0 and leftovers(dataset_dir) == []


def test_prepare_removes_the_leftovers_of_dead_processes_only(tmp_path):
    dataset_dir = tmp_path / "cifar10"
    dead, alive = dead_pid(), os.getppid()
    for name in (f".npy-uint8.tmp-{dead}", f".npy-uint8.old-{dead}", f".npy-uint8.tmp-{alive}"):
        (dataset_dir / name).mkdir(parents=True)
        (dataset_dir / name / "train_images.npy").write_bytes(b"partial")
    prepare("cifar10", scale=0.005, stores=["npy-uint8"], data_dir=tmp_path, progress=False)
    assert leftovers(dataset_dir) == [f".npy-uint8.tmp-{alive}"]  # a live process's folder is its own


# ----------------------------------------------------------------------------------- 11: interruption
def children_of(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_ctrl_c_during_an_image_store_write_ends_within_seconds_and_leaves_no_temporary_folder(tmp_path):
    import psutil

    store = "files-png"  # the parquet store encodes through the same pool (thesislib/stores/pool.py)
    # scale 0.2 (22,000 images): the write lasts several seconds, so the Ctrl-C lands inside it, not after

    dataset_dir = tmp_path / "tinyimagenet"
    run = subprocess.Popen(prepare_command(tmp_path, "--dataset", "tinyimagenet", "--scale", "0.2", "--stores",
                                           store), stderr=subprocess.PIPE, text=True, env=ENV,
                           start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:  # wait until the encoding workers run
        if any(dataset_dir.glob(f".{store}.tmp-*")) and len(children_of(run.pid)) >= 2:
            break
        time.sleep(0.2)
    workers = children_of(run.pid)
    assert run.poll() is None and workers, "prepare ended before its workers started"
    os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    status = run.wait(timeout=20)      # a hang fails here
    stderr = run.stderr.read()
    assert status == 130 and "Traceback" not in stderr, stderr
    assert leftovers(dataset_dir) == [] and not (dataset_dir / store).exists()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []


def test_a_store_built_after_an_interrupted_one_is_complete_and_identical(tmp_path):
    paths = prepare("cifar10", scale=0.005, stores=["files-png"], data_dir=tmp_path, progress=False)
    stale = tmp_path / "cifar10" / f".files-png.tmp-{dead_pid()}"
    stale.mkdir()
    again = prepare("cifar10", scale=0.005, stores=["files-png"], data_dir=tmp_path, force=True, progress=False)
    assert verify_store(open_store(tmp_path, "cifar10", "files-png"), progress=False) > 0
    assert again == paths and not stale.exists() and leftovers(tmp_path / "cifar10") == []
