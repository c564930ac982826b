"""Progress on long work: the training loop's on_batch hook, the repeat bar it feeds, and the step clock of
`make run`; bars only on a terminal and never with --quiet."""

import io

from thesislib import progress
from thesislib.bench import BenchConfig, run_protocol
from thesislib.loaders import make_loader
from thesislib.models import build_model, build_optimizer
from thesislib.stores import open_store
from thesislib.train import fit


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bars_are_wanted_only_on_a_terminal_and_not_when_quiet():
    assert progress.wanted(stream=Terminal()) and not progress.wanted(True, Terminal())
    assert not progress.wanted(stream=io.StringIO())


def test_the_training_loop_calls_on_batch_once_per_batch_with_a_growing_data_wait(prepared_cifar10):
    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    loader = make_loader("numpy", store, "train", shuffle=True, batch_size=64, seed=0, device="cpu")
    model = build_model("small", 10, 32, 0)
    calls = []
    try:
        results = fit(model, build_optimizer("sgd", model, 0.05), loader, None, 2, "cpu",
                      on_batch=lambda images, data_s: calls.append((images, data_s)))
    finally:
        loader.close()
    assert len(calls) == sum(r.batches for r in results) == 2 * len(loader)
    assert sum(images for images, _ in calls) == sum(r.images for r in results)
    first_epoch = [data_s for _, data_s in calls[:len(loader)]]
    assert first_epoch == sorted(first_epoch) and first_epoch[-1] <= results[0].data_s


def test_the_repeat_bar_shows_batches_images_per_second_and_data_wait(capsys):
    with progress.RepeatBar(4, "repeat 1/2") as bar:
        for step in range(4):
            bar(64, 0.001 * (step + 1))
    err = capsys.readouterr().err
    assert "repeat 1/2" in err and "4/4" in err and "img/s" in err and "data wait" in err


def test_bench_draws_no_bar_when_stderr_is_not_a_terminal(prepared_cifar10, capsys):
    config = BenchConfig(loader="numpy", dataset="cifar10", repeats=1, batch_size=64, scale=0.005,
                         data_dir=str(prepared_cifar10), device="cpu", model="none")
    run_protocol(config, progress=True)
    err = capsys.readouterr().err
    assert "repeat 1/1:" in err and "\r" not in err and "data wait" not in err


def test_the_step_clock_says_step_k_of_n_elapsed_and_an_estimate_after_the_first_step():
    clock = progress.StepClock(3)
    first = clock.begin("prepare")
    clock.end()
    second = clock.begin("bench")
    assert first.startswith("[step 1/3, 0 s elapsed] prepare") and "left" not in first
    assert second.startswith("[step 2/3, ") and "left] bench" in second
    assert progress.format_seconds(3725) == "1 h 02 min" and progress.format_seconds(65) == "1 min 05 s"
