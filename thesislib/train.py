"""The training loop: one epoch over a loader, timed the way the contract defines the figures.

Per batch the loop (1) waits for the loader's next batch and copies it to the device: that is the
*data* time; (2) converts uint8 NHWC to float NCHW on the device and runs forward, backward and the
optimizer step (or the emulated accelerator's wait): the *compute* time. On a GPU the loop synchronises at
both boundaries, so asynchronous kernels are charged to the step that queued them, not to the next wait.
On the CPU, with a fixed seed, every epoch is deterministic.

Under ``torchrun`` the model arrives wrapped in ``DistributedDataParallel`` (see :mod:`thesislib.bench`):
the gradients' all-reduce runs inside ``loss.backward()``, so it is compute time, and each rank times its
own epoch and data wait.
"""

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from thesislib.distributed import sum_over_ranks
from thesislib.models import EmulatedAccelerator


@dataclass
class EpochResult:
    epoch: int
    epoch_s: float      # wall time of the training pass
    data_s: float       # of which: waiting for the next batch and copying it to the device
    images: int         # training images seen
    batches: int
    train_loss: float   # mean cross-entropy over the epoch's images (NaN for none/sleep)
    val_acc: float = math.nan


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(images, labels, device: torch.device) -> tuple:
    """The batch on ``device`` (asynchronous from pinned memory)."""
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) pixels as float32 (B, 3, H, W) in [0, 1]; float stores already hold pixel / 255."""
    x = images.permute(0, 3, 1, 2).float()
    return (x.div_(255) if images.dtype == torch.uint8 else x).contiguous()


def timed_batches(loader, device: torch.device, clock: dict, first_batches=None):
    """Yield the loader's batches on ``device``; add the time spent getting each to ``clock["data_s"]``.

    ``first_batches()`` is called, outside the data time, once each of the loader's workers has delivered
    its first batch (a DataLoader hands them over in turn: after batch ``num_workers``; without workers,
    after the first)."""
    iterator = iter(loader)
    call_after, count = max(1, getattr(loader, "num_workers", 0)), 0
    while True:
        start = time.perf_counter()
        try:
            images, labels = next(iterator)
        except StopIteration:
            clock["data_s"] += time.perf_counter() - start
            return
        batch = to_device(images, labels, device)
        synchronize(device)
        clock["data_s"] += time.perf_counter() - start
        count += 1
        if count == call_after and first_batches is not None:
            first_batches()
        yield batch


def train_step(model, optimizer, images, labels) -> torch.Tensor:
    """One optimisation step; returns the batch's summed loss as a 0-d tensor (no host sync)."""
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(to_float_nchw(images)), labels)
    loss.backward()
    optimizer.step()
    return loss.detach() * len(labels)


def train_epoch(model, optimizer, loader, device, epoch: int = 0, first_batches=None,
                on_batch=None) -> EpochResult:
    """One pass over ``loader`` (after ``loader.set_epoch(epoch)``), timed; ``first_batches()`` is called
    when the first batches have arrived (see :func:`timed_batches`): the profiler then samples the
    loader's workers while they live."""
    device = torch.device(device)
    loader.set_epoch(epoch)
    emulated = isinstance(model, EmulatedAccelerator)
    if not emulated:
        model.train()
    clock, images_seen, batches, loss_sum = {"data_s": 0.0}, 0, 0, torch.zeros((), device=device)
    synchronize(device)
    start = time.perf_counter()
    for images, labels in timed_batches(loader, device, clock, first_batches):
        if emulated:
            model.wait()
        else:
            loss_sum += train_step(model, optimizer, images, labels)
        synchronize(device)
        images_seen, batches = images_seen + len(labels), batches + 1
        if on_batch is not None:  # a progress bar (thesislib.progress): images, the epoch's data wait so far
            on_batch(len(labels), clock["data_s"])
    epoch_s = time.perf_counter() - start
    loss = math.nan if emulated or not images_seen else loss_sum.item() / images_seen
    return EpochResult(epoch, epoch_s, clock["data_s"], images_seen, batches, loss)


@torch.no_grad()
def evaluate(model, loader, device) -> float:
    """Top-1 accuracy on ``loader`` (NaN for an emulated accelerator). Under torchrun each rank evaluates
    its own share of the split and the counts are summed over the ranks, so every rank returns the same
    accuracy (the sampler's padding, at most world_size - 1 repeated samples, counts like any sample, as
    with DistributedSampler)."""
    if isinstance(model, EmulatedAccelerator):
        return math.nan
    device = torch.device(device)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # evaluated unwrapped: no collective call per forward
    model.eval()
    correct, seen = torch.zeros((), dtype=torch.int64, device=device), 0
    for images, labels in loader:
        images, labels = to_device(images, labels, device)
        correct += (model(to_float_nchw(images)).argmax(1) == labels).sum()
        seen += len(labels)
    correct, seen = sum_over_ranks(correct.item(), seen)
    return correct / seen if seen else math.nan


def fit(model, optimizer, train_loader, val_loader, epochs: int, device, before_epoch=None,
        after_epoch=None, first_batches=None, on_batch=None) -> list:
    """``epochs`` epochs of training, each followed by validation; returns one EpochResult per epoch.

    ``before_epoch(epoch)`` runs before each epoch's timer starts (``bench --cold`` evicts the page cache
    there); ``after_epoch(result)`` after its validation; ``first_batches()`` as each epoch's first
    batches have arrived (see :func:`timed_batches`); ``on_batch(images, data_s)`` after each training batch.
    """
    results = []
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        result = train_epoch(model, optimizer, train_loader, device, epoch, first_batches, on_batch)
        if val_loader is not None:
            result.val_acc = evaluate(model, val_loader, device)
        results.append(result)
        if after_epoch is not None:
            after_epoch(result)
    return results
