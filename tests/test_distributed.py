"""Several ranks: the sampler's rank split (a pure function, over a grid of sizes), then real gloo processes
(two plain processes joined by thesislib.distributed, then `torchrun --nproc-per-node 2 -m thesislib bench`
with ``numpy`` and with the streaming ``webdataset``): the ranks read disjoint shares that cover each epoch,
one row per rank, and bad input stops every rank."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DistributedSampler

from thesislib.distributed import agreed_message, rank_and_world, rank_device, timeout_s
from thesislib.errors import ThesisError
from thesislib.loaders.sampler import batch_count, epoch_batches, epoch_order, rank_share
from thesislib.results import aggregate_rank_frame, aggregate_ranks

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [str(Path(sys.executable).with_name("torchrun"))]  # the venv's torchrun
if not Path(TORCHRUN[0]).is_file():
    TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # the same launcher
SIZES = [1, 2, 3, 5, 7, 10, 16, 33, 100, 250]
BATCH_SIZES = [1, 2, 3, 7, 64]
WORLD_SIZES = [1, 2, 3, 4, 8]


# ------------------------------------------------------------------------------- the pure function
def rank_batches(num_samples, batch_size, world_size, epoch=0, shuffle=True, drop_last=False):
    return [epoch_batches(num_samples, batch_size, seed=3, epoch=epoch, shuffle=shuffle, drop_last=drop_last,
                          rank=rank, world_size=world_size) for rank in range(world_size)]


@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_cover_the_epoch_disjointly_with_padding_only_of_the_first_samples(world_size, shuffle):
    for num_samples in [n for n in SIZES if n >= world_size]:
        per_rank = -(-num_samples // world_size)
        padding = epoch_order(num_samples, 3, 1, shuffle)[:per_rank * world_size - num_samples]
        for batch_size in BATCH_SIZES:
            ranks = rank_batches(num_samples, batch_size, world_size, epoch=1, shuffle=shuffle)
            counts = Counter(np.concatenate([np.concatenate(batches) for batches in ranks]).tolist())
            assert sorted(counts) == list(range(num_samples))  # every sample, on some rank
            assert sorted(i for i, n in counts.items() if n > 1) == sorted(padding.tolist())
            assert max(counts.values()) == 1 + (len(padding) > 0)  # padding read twice, the rest once
            for batches in ranks:
                assert sum(map(len, batches)) == per_rank  # every rank the same number of samples ...
                assert len(batches) == batch_count(num_samples, batch_size, world_size=world_size)  # ... batches
                assert all((np.diff(batch) > 0).all() for batch in batches)  # sorted, no index twice


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_rank_share_is_what_torchs_distributed_sampler_takes(world_size):
    for num_samples in [n for n in SIZES if n >= world_size]:
        for rank in range(world_size):
            sampler = DistributedSampler(range(num_samples), num_replicas=world_size, rank=rank, shuffle=False)
            assert rank_share(np.arange(num_samples), rank, world_size).tolist() == list(sampler)


def test_one_rank_of_one_gets_the_single_process_batches():
    for num_samples, batch_size in [(250, 64), (10, 4), (7, 7), (1, 3)]:
        for drop_last in (False, True):
            alone = epoch_batches(num_samples, batch_size, 5, 2, drop_last=drop_last)
            ranked = epoch_batches(num_samples, batch_size, 5, 2, drop_last=drop_last, rank=0, world_size=1)
            assert [b.tolist() for b in ranked] == [b.tolist() for b in alone]


def test_drop_last_drops_each_ranks_short_batch():
    for batches in rank_batches(250, 64, world_size=2, drop_last=True):  # 125 samples a rank: 64 + 61
        assert [len(batch) for batch in batches] == [64]


def test_more_ranks_than_samples_is_one_error_naming_the_fix():
    with pytest.raises(ThesisError, match=r"3 ranks for 2 sample\(s\).*at most 2 rank.*--nproc-per-node"):
        epoch_batches(2, 1, 0, 0, rank=0, world_size=3)
    with pytest.raises(ThesisError, match="rank 2 is not below the world size 2"):
        epoch_batches(10, 1, 0, 0, rank=2, world_size=2)


def test_without_torchrun_a_process_is_rank_0_of_1(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert rank_and_world() == (0, 1)


def launched_as(monkeypatch, rank: int, world_size: int) -> None:
    """The environment torchrun gives rank ``rank`` of ``world_size`` (no process group is made)."""
    for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", world_size),
                        ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", 29500)):
        monkeypatch.setenv(name, str(value))


def test_under_torchrun_the_rank_comes_from_its_environment(monkeypatch):
    launched_as(monkeypatch, 1, 2)
    assert rank_and_world() == (1, 2) and rank_device("cpu") == "cpu"


def test_under_torchrun_a_rank_refuses_a_named_gpu_or_a_missing_one(monkeypatch):
    launched_as(monkeypatch, 3, 4)
    with pytest.raises(ThesisError, match="--device cuda:1: under torchrun each rank uses the GPU of its LOCAL"):
        rank_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ThesisError, match="LOCAL_RANK 3 but this server has 2 CUDA GPU.*--nproc-per-node 2"):
        rank_device("cuda")


def test_a_bad_timeout_setting_is_one_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("THESISLIB_DIST_TIMEOUT_S", "soon")
    with pytest.raises(ThesisError, match="THESISLIB_DIST_TIMEOUT_S='soon': set it to a number of seconds"):
        timeout_s()


def test_agreed_errors_name_the_failed_ranks_once():
    assert agreed_message({1: "bad"}, 2) == "rank(s) 1 of 2: bad"
    assert agreed_message({0: "bad", 1: "bad"}, 2) == "rank(s) 0, 1 of 2: bad"
    assert agreed_message({0: "a", 2: "b"}, 3) == "rank 0 of 3: a; rank 2 of 3: b"
    assert agreed_message({0: "alone"}, 1) == "alone"


def test_a_repeats_rank_rows_combine_into_the_slowest_time_and_summed_throughput():
    rows = [{"run_id": "r", "repeat": 0, "rank": rank, "world_size": 2, "loader": "numpy", "total_train_s": t,
             "epoch_s_mean": t, "data_s_mean": d, "stall_pct": 100 * d / t, "images_per_s": 125 / t,
             "peak_ram_mb": 300.0, "peak_vram_mb": math.nan, "cpu_util_pct": 40.0, "train_loss": loss,
             "val_acc": 0.5} for rank, t, d, loss in [(0, 1.0, 0.1, 2.0), (1, 2.0, 0.5, 1.0)]]
    row = aggregate_ranks(rows)
    assert row["total_train_s"] == 2.0 and row["images_per_s"] == 125 + 62.5 and row["peak_ram_mb"] == 600
    assert row["data_s_mean"] == 0.5 and row["data_s_min"] == 0.1  # the straggler's wait shows
    assert row["train_loss"] == 1.5 and row["loader"] == "numpy" and "rank" not in row
    assert math.isnan(row["peak_vram_mb"])  # no GPU on any rank stays NaN, not 0


def test_rows_of_single_process_runs_pass_the_rank_aggregate_unchanged():
    frame = pd.DataFrame({"run_id": ["a", "a", "b"], "repeat": [0, 1, 0], "images_per_s": [1.0, 2.0, 3.0],
                          "data_s_mean": [0.1, 0.2, 0.3], "world_size": [1, 1, math.nan]})
    combined = aggregate_rank_frame(frame)
    assert combined["images_per_s"].tolist() == [1.0, 2.0, 3.0] and combined["world_size"].tolist() == [1, 1, 1]
    assert combined["data_s_min"].tolist() == combined["data_s_mean"].tolist()


# ------------------------------------------------------------------------- real processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra) -> dict:
    """This environment without a launcher's variables, our checkout first on the path, plus ``extra``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return {**env, **extra}


GLOO_PAIR = """
import json, sys
import numpy as np
from thesislib import distributed
from thesislib.errors import ThesisError
from thesislib.loaders.sampler import epoch_batches

def fail_on_rank_1():
    if distributed.rank_and_world()[0] == 1:
        raise ThesisError("rank 1's store is missing")
    return "ok"

with distributed.process_group("cpu"):
    rank, world = distributed.rank_and_world()
    shares = distributed.all_gather(np.concatenate(epoch_batches(101, 8, 0, 1, rank=rank, world_size=world)))
    try:
        distributed.agreed(fail_on_rank_1)
        error = None
    except ThesisError as exc:
        error = str(exc)
    total = distributed.sum_over_ranks(rank + 1.0)
print(json.dumps({"rank": rank, "world": world, "shares": [s.tolist() for s in shares], "error": error,
                  "total": total}))
"""


@pytest.fixture(scope="module")
def gloo_pair():
    """What two real processes joined by thesislib.distributed.process_group (gloo) saw, per rank."""
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "THESISLIB_DIST_TIMEOUT_S": "60"}
    processes = [subprocess.Popen([sys.executable, "-c", GLOO_PAIR], env=child_env(RANK=str(rank), **env),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_gloo_processes_read_disjoint_shares_that_cover_the_epoch(gloo_pair):
    assert [seen["rank"] for seen in gloo_pair] == [0, 1] and {seen["world"] for seen in gloo_pair} == {2}
    shares = gloo_pair[0]["shares"]
    assert shares == gloo_pair[1]["shares"]
    counts = Counter(shares[0] + shares[1])
    assert sorted(counts) == list(range(101))
    assert [i for i, n in counts.items() if n == 2] == epoch_order(101, 0, 1)[:1].tolist()  # 1 of padding


def test_an_error_on_one_rank_stops_every_rank_with_the_same_line(gloo_pair):
    assert [seen["error"] for seen in gloo_pair] == ["rank(s) 1 of 2: rank 1's store is missing"] * 2
    assert [seen["total"] for seen in gloo_pair] == [[3.0], [3.0]]  # and the group still works after it


def torchrun(tmp_path, *bench_args, extra_env=None, timeout=240):
    """`torchrun --standalone --nproc-per-node 2 -m thesislib bench ARGS` (a free port picked by torchrun
    itself); returns (exit status, [stderr of rank 0, rank 1], torchrun's own output)."""
    logs = tmp_path / "torchrun-logs"
    command = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "--log-dir", str(logs), "--redirects",
               "2", "-m", "thesislib", "bench", "--device", "cpu", *map(str, bench_args)]
    done = subprocess.run(command, cwd=tmp_path, env=child_env(THESISLIB_DIST_TIMEOUT_S="60", **(extra_env or {})),
                          capture_output=True, text=True, timeout=timeout)
    errors = [next(logs.glob(f"*/attempt_0/{rank}/stderr.log")).read_text() for rank in (0, 1)]
    return done.returncode, errors, done.stdout + done.stderr


def logged_passes(folder: Path, rank: int, split: str, batches_per_pass: int) -> list:
    """The index batches rank ``rank``'s ``split`` loader was given (THESISLIB_SAMPLE_LOG), one list per
    pass over the split, with the epoch the loader was set to."""
    records = [json.loads(line) for line in (folder / f"rank{rank}-{split}.jsonl").read_text().splitlines()]
    passes = [records[i:i + batches_per_pass] for i in range(0, len(records), batches_per_pass)]
    return [(part[0]["epoch"], [record["indices"] for record in part]) for part in passes]


def test_torchrun_two_ranks_train_on_disjoint_shares_that_cover_each_epoch(prepared_cifar10, tmp_path):
    results, log = tmp_path / "results.csv", tmp_path / "samples"
    status, errors, output = torchrun(
        tmp_path, "--loader", "numpy", "--dataset", "cifar10", "--scale", 0.005, "--epochs", 2, "--batch-size",
        32, "--data-dir", prepared_cifar10, "--results", results, extra_env={"THESISLIB_SAMPLE_LOG": str(log)})
    assert status == 0, (errors, output)
    for split, count, epochs in (("train", 250, [0, 1]), ("val", 50, [0, 0])):  # val: once after each epoch
        per_pass = batch_count(count, 32, world_size=2)
        ranks = [logged_passes(log, rank, split, per_pass) for rank in (0, 1)]
        assert [[epoch for epoch, _ in passes] for passes in ranks] == [epochs, epochs]
        for number, epoch in enumerate(epochs):
            mine, theirs = (sum(passes[number][1], []) for passes in ranks)
            assert not set(mine) & set(theirs) and sorted(mine + theirs) == list(range(count))
            for rank in (0, 1):  # what each rank read is the sampler's share for it
                expected = epoch_batches(count, 32, 0, epoch, shuffle=split == "train", rank=rank, world_size=2)
                assert ranks[rank][number][1] == [batch.tolist() for batch in expected]
    frame = pd.read_csv(results)
    assert frame["rank"].tolist() == [0, 1] and (frame["world_size"] == 2).all()
    assert frame["run_id"].nunique() == 1 and frame["val_acc"].nunique() == 1  # accuracy over both shares
    assert frame[["total_train_s", "images_per_s", "peak_ram_mb", "train_loss"]].notna().all().all()
    assert "Traceback" not in errors[0] + errors[1]


@pytest.fixture(scope="module")
def webdataset_cifar10(tmp_path_factory):
    """A data folder with cifar10 at scale 0.005 (250 train, 50 val) in the ``webdataset`` store: 16 tar
    shards a split, 8 for each of 2 ranks."""
    from thesislib.prepare import prepare

    data_dir = tmp_path_factory.mktemp("streaming-data")
    prepare("cifar10", source="synthetic", scale=0.005, stores=["webdataset"], seed=0, data_dir=data_dir,
            progress=False)
    return data_dir


def streamed_passes(folder: Path, rank: int, split: str, lengths: list) -> list:
    """Rank ``rank``'s logged ``split`` batches (THESISLIB_SAMPLE_LOG), cut into passes of ``lengths``
    batches, each as (epoch, [indices of each batch])."""
    records = [json.loads(line) for line in (folder / f"rank{rank}-{split}.jsonl").read_text().splitlines()]
    assert len(records) == sum(lengths), (split, rank, len(records), lengths)
    starts = np.cumsum([0, *lengths])
    return [(records[start]["epoch"], [record["indices"] for record in records[start:end]])
            for start, end in zip(starts[:-1], starts[1:])]


def test_torchrun_two_ranks_stream_disjoint_shards_that_cover_each_epoch(webdataset_cifar10, tmp_path):
    from thesislib.loaders.streaming import assigned_shards
    from thesislib.stores import open_store
    from thesislib.stores.webdataset import split_shards

    results, log, batch_size = tmp_path / "results.csv", tmp_path / "samples", 25
    status, errors, output = torchrun(
        tmp_path, "--loader", "webdataset", "--dataset", "cifar10", "--scale", 0.005, "--epochs", 2,
        "--batch-size", batch_size, "--data-dir", webdataset_cifar10, "--results", results,
        extra_env={"THESISLIB_SAMPLE_LOG": str(log)})
    assert status == 0, (errors, output)
    store, padded = open_store(webdataset_cifar10, "cifar10", "webdataset"), 0
    for split, count, epochs in (("train", 250, [0, 1]), ("val", 50, [0, 0])):  # val: once after each epoch
        _, sizes = split_shards(store, split)
        first = np.cumsum([0, *sizes])
        shards = {(rank, epoch): assigned_shards(len(sizes), 0, epoch, rank, 2, shuffle=split == "train")
                  for rank in (0, 1) for epoch in set(epochs)}
        own = {key: batch_count(int(sizes[value].sum()), batch_size) for key, value in shards.items()}
        lengths = [max(own[rank, epoch] for rank in (0, 1)) for epoch in epochs]  # every rank: the busiest's
        ranks = [streamed_passes(log, rank, split, lengths) for rank in (0, 1)]
        assert [[epoch for epoch, _ in passes] for passes in ranks] == [epochs, epochs]
        for number, epoch in enumerate(epochs):
            read = []
            for rank in (0, 1):
                batches = ranks[rank][number][1]
                mine, padding = batches[:own[rank, epoch]], batches[own[rank, epoch]:]
                assert padding == [mine[-1]] * len(padding)  # a rank with fewer batches repeats its last
                padded += len(padding)
                read.append(sum(mine, []))  # what the rank read is the samples of its own shards
                assert sorted(read[-1]) == [i for shard in sorted(shards[rank, epoch])
                                            for i in range(first[shard], first[shard + 1])]
            assert not set(read[0]) & set(read[1]) and sorted(read[0] + read[1]) == list(range(count))
    assert padded == 2  # 124 and 126 train samples: 5 and 6 batches of 25 in each epoch (the rank swaps)
    frame = pd.read_csv(results)
    assert frame["rank"].tolist() == [0, 1] and (frame["world_size"] == 2).all()
    assert frame["run_id"].nunique() == 1 and frame["val_acc"].nunique() == 1
    assert frame[["total_train_s", "images_per_s", "train_loss"]].notna().all().all()
    assert "Traceback" not in errors[0] + errors[1]


def test_torchrun_with_more_ranks_than_samples_stops_every_rank_with_one_line(tmp_path):
    from thesislib.prepare import prepare

    prepare("cifar10", source="synthetic", scale=0.0001, stores=["npy-uint8"], seed=0, data_dir=tmp_path / "data",
            progress=False)  # 10 train samples, 1 val sample
    status, errors, output = torchrun(tmp_path, "--loader", "numpy", "--dataset", "cifar10", "--scale", 0.0001,
                                      "--data-dir", tmp_path / "data", "--results", tmp_path / "results.csv")
    assert status != 0 and not (tmp_path / "results.csv").exists()
    for text in errors:  # every rank: the same one line, naming the problem and the fix
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in text, text
        assert "val: 2 ranks for 1 sample(s)" in lines[0] and "--nproc-per-node" in lines[0], lines[0]


def test_torchrun_rank_failing_mid_epoch_ends_the_other_rank(prepared_cifar10, tmp_path):
    store = tmp_path / "data" / "cifar10" / "files-png"
    shutil.copytree(prepared_cifar10 / "cifar10" / "files-png", store)
    broken = next(store.glob("train/*/000100.png"))
    broken.write_bytes(b"not a png")
    status, errors, output = torchrun(tmp_path, "--loader", "files", "--store", "files-png", "--dataset",
                                      "cifar10", "--scale", 0.005, "--data-dir", tmp_path / "data", "--results",
                                      tmp_path / "results.csv", timeout=180)  # a hang fails here
    assert status != 0 and not (tmp_path / "results.csv").exists()
    reader = [text for text in errors if str(broken) in text]  # the rank whose share holds the file
    assert len(reader) == 1, errors
    assert reader[0].startswith("error: ") and len(reader[0].strip().splitlines()) == 1, reader[0]
