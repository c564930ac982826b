"""Several ranks, one protocol: the ``torch.distributed`` process group that ``torchrun`` asks for.

``torchrun --nproc-per-node N -m thesislib bench ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`process_group` joins them into one group
(gloo on the CPU, NCCL with CUDA, each rank on GPU ``LOCAL_RANK``) and destroys it on the way out; without
those variables it does nothing, so a plain ``python -m thesislib bench`` is one rank of one.

No rank may be left waiting in a collective call for a rank that has failed:

* :func:`agreed` runs a set-up step on every rank and all-gathers its outcome, so an error on one rank
  (a missing store on one server, a bad rank count) becomes the same one-line ThesisError on every rank;
* a rank that fails during training prints its one line and exits; ``torchrun`` then stops the others
  (a rank whose gloo collective notices the closed connection first ends with gloo's own RuntimeError,
  which says that a remote worker crashed). :data:`TIMEOUT_S` bounds any other wait (NCCL across
  servers): set ``THESISLIB_DIST_TIMEOUT_S`` to change it. torch's own distributed errors
  (``torch.distributed.DistError``: a timeout, a lost store) become a ThesisError saying another rank
  stopped, and so does a failure to join the others.
"""

import os
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from thesislib.errors import ThesisError

TIMEOUT_S = 300.0          # the longest any collective call waits for the other ranks
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True in a process that ``torchrun`` started (its environment names a rank and a world)."""
    return all(name in os.environ for name in LAUNCH_VARIABLES)


def rank_and_world() -> tuple:
    """(rank, world_size) of this process: from the process group if one is set up, else from
    ``torchrun``'s environment, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if launched():
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def local_rank() -> int:
    """This process's rank on its own server (``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """True on rank 0 (the one that writes results and prints progress)."""
    return rank_and_world()[0] == 0


def backend(device: str) -> str:
    """The process group's backend for a ``--device``: NCCL for CUDA, gloo for the CPU."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def rank_device(device: str) -> str:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` for ``cuda`` under torchrun (one GPU per rank);
    ``device`` itself otherwise. A ThesisError if the server has fewer GPUs than ranks, or ``cuda:N`` is
    asked for under torchrun."""
    if not launched() or not str(device).startswith("cuda"):
        return device
    if device != "cuda":
        raise ThesisError(f"--device {device}: under torchrun each rank uses the GPU of its LOCAL_RANK; "
                          "pass --device cuda (or auto)")
    count = torch.cuda.device_count()
    if local_rank() >= count:
        raise ThesisError(f"rank {rank_and_world()[0]} has LOCAL_RANK {local_rank()} but this server has "
                          f"{count} CUDA GPU(s): run torchrun with --nproc-per-node {count} or fewer")
    return f"cuda:{local_rank()}"


def timeout_s() -> float:
    """:data:`TIMEOUT_S`, or ``THESISLIB_DIST_TIMEOUT_S`` if set (a ThesisError if that is no number > 0)."""
    text = os.environ.get("THESISLIB_DIST_TIMEOUT_S")
    if text is None:
        return TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ThesisError(f"THESISLIB_DIST_TIMEOUT_S={text!r}: set it to a number of seconds > 0, or unset it")
    return value


@contextmanager
def process_group(device: str = "cpu"):
    """Join the ranks ``torchrun`` started into one process group for the block (gloo, or NCCL for a CUDA
    ``device``), and destroy it after, also when the block fails; without torchrun, do nothing. A
    collective that fails because another rank stopped becomes a ThesisError."""
    if not launched() or dist.is_initialized():
        yield
        return
    name = backend(device)
    if name == "nccl":
        torch.cuda.set_device(local_rank())
    try:
        dist.init_process_group(name, timeout=timedelta(seconds=timeout_s()))
    except dist.DistError as exc:
        raise ThesisError(f"rank {rank_and_world()[0]} could not join the other ranks at "
                          f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({type(exc).__name__}: "
                          f"{first_line(exc)}): check torchrun's --rdzv-endpoint (or --master-addr/--master-port) "
                          "and that every server reaches it") from exc
    try:
        yield
    except dist.DistError as exc:
        rank, world = rank_and_world()
        raise ThesisError(f"rank {rank} of {world}: another rank stopped (its error is printed above; "
                          f"{type(exc).__name__}: {first_line(exc)}): fix that and run again") from exc
    finally:
        dist.destroy_process_group()


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def all_gather(value) -> list:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` without a process group."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def broadcast(value):
    """Rank 0's ``value`` on every rank (``value`` itself without a process group)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here (nothing without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def agreed(step, release=None):
    """``step()``'s result, once every rank has run its own ``step``; if it raised a ThesisError on any
    rank, the same one-line ThesisError on every rank (the rank(s) named), so none goes on to a collective
    call that the failed one will never make. A rank whose own step succeeded calls ``release(result)``
    then (to close what the step opened)."""
    try:
        result, error = step(), None
    except ThesisError as exc:
        result, error = None, exc
    errors = all_gather(None if error is None else str(error))
    failed = {rank: text for rank, text in enumerate(errors) if text is not None}
    if failed:
        if error is None and release is not None:
            release(result)
        raise ThesisError(agreed_message(failed, len(errors))) from error
    return result


def agreed_message(failed: dict, world_size: int) -> str:
    """One line for the ranks that failed: the message once if they all say the same, else per rank."""
    texts = set(failed.values())
    if world_size == 1:
        return next(iter(texts))
    ranks = ", ".join(map(str, failed))
    if len(texts) == 1:
        return f"rank(s) {ranks} of {world_size}: {next(iter(texts))}"
    return "; ".join(f"rank {rank} of {world_size}: {text}" for rank, text in failed.items())


def sum_over_ranks(*values: float) -> list:
    """Each of ``values`` summed over the ranks (the values themselves without a process group)."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def wrap_model(model, device: str):
    """``model`` in DistributedDataParallel when a process group is set up and it has trainable
    parameters (the emulated accelerators ``none`` and ``sleep:MS`` have none); else ``model`` itself."""
    if not dist.is_initialized() or not isinstance(model, torch.nn.Module) or not any(
            parameter.requires_grad for parameter in model.parameters()):
        return model
    device_ids = [torch.device(device).index] if str(device).startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
