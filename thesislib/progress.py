"""Progress on long work, on stderr: the one place that decides whether bars are shown and draws them.

Bars are tqdm's (``prepare``'s too) and are shown only when stderr is a terminal and the user did not ask
for ``--quiet``: a log file or a pipe gets no carriage-return noise. The training loop knows nothing of
bars: it calls an ``on_batch(images, data_s)`` hook after each batch (see :func:`thesislib.train.fit`), and
:class:`RepeatBar` is such a hook.
"""

import sys
import time

from tqdm import tqdm


def wanted(quiet: bool = False, stream=None) -> bool:
    """Whether to draw progress bars: not ``quiet`` and ``stream`` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return not quiet and stream.isatty()
    except (AttributeError, ValueError):   # a closed or stream-less stderr
        return False


class RepeatBar:
    """One repeat's bar: the batches of its epochs, images per second and the share of time spent waiting
    for data. Call it as ``on_batch(images, data_s)`` (``data_s``: the epoch's data wait so far); use it as
    a context manager so that it is closed. Disabled, it costs one attribute test per batch."""

    def __init__(self, total_batches: int, description: str, enabled: bool = True):
        self.bar = tqdm(total=total_batches, desc=description, unit="batch", leave=True, file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True)
        self.images = 0
        self.data_s = self.epoch_data_s = 0.0
        self.start = time.perf_counter()

    def __call__(self, images: int, data_s: float) -> None:
        if self.bar.disable:
            return
        if data_s < self.epoch_data_s:   # a new epoch started: its clock starts from zero
            self.data_s += self.epoch_data_s
        self.epoch_data_s = data_s
        self.images += images
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{self.images / elapsed:,.0f} img/s, data wait "
                                 f"{100 * (self.data_s + data_s) / elapsed:.0f}%", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def repeat_bar(loader, epochs: int, description: str, enabled: bool) -> RepeatBar:
    """A :class:`RepeatBar` over ``epochs`` passes of ``loader`` (its length in batches, when it has one)."""
    try:
        per_epoch = len(loader)
    except TypeError:
        per_epoch = None
    return RepeatBar(per_epoch * epochs if per_epoch is not None else None, description, enabled)


class StepClock:
    """``step k of n``, the time since the first step and an estimate of the rest (the mean step so far
    times the steps left), for ``make run``'s lines."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def begin(self, label: str) -> str:
        elapsed = time.perf_counter() - self.start
        left = f", about {format_seconds(elapsed / self.done * (self.total - self.done))} left" \
            if self.done else ""
        return f"[step {self.done + 1}/{self.total}, {format_seconds(elapsed)} elapsed{left}] {label}"

    def end(self) -> None:
        self.done += 1


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
