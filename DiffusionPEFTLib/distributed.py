"""Several processes training one model, started by ``torchrun`` (one node or several).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`start` joins the process
group (NCCL when the processes use CUDA GPUs, gloo on CPUs) and gives each process its GPU (cuda:LOCAL_RANK).
The trainer then needs only the few collective steps below: every process draws the same global batch from
the shared seed and trains on its share; gradients are averaged by one all-reduce per optimizer step, so the
trained parameters stay identical on every process without wrapping the model (adapters that change their
shapes while training, like SeLoRA, need no re-wrapping); a cancel on any process stops all; only the main
process (rank 0) writes files and reports events. With one process every function here does nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist

from . import errors
from .errors import DiffusionPEFTError, InputError, JobCancelled
from .events import EventSink

BUCKET_ELEMENTS = 1 << 24  # gradients are averaged in flat buckets of at most this many elements (64 MB fp32)
COMMANDS = ("pretrain", "finetune", "translate-train")  # the commands that run under torchrun


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes; ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The running process group's view of this process; World() when there is none."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return World()


def processes_note() -> str:
    """' on 2 processes (global batch = --batch × 2)' in a distributed run, else '' (for log lines)."""
    size = world().size
    return f" on {size} processes (global batch = --batch × {size})" if size > 1 else ""


def launched_size() -> int:
    """How many processes the launcher (torchrun) started; 1 when none did."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def start(command: str, device: str) -> str:
    """Join the process group torchrun describes (nothing for one process); return the device this process
    uses (``auto``/``cuda`` become cuda:LOCAL_RANK). InputError for a command that does not run distributed."""
    if launched_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    if command not in COMMANDS:
        raise InputError(f"{command} runs as one process; only {', '.join(COMMANDS)} run under torchrun.",
                         hint=f"Run 'diffusion-peft {command} …' without torchrun.")
    if not dist.is_available() or "MASTER_ADDR" not in os.environ:
        raise InputError("WORLD_SIZE is set but this is not a torchrun process group (no MASTER_ADDR).",
                         hint="Start several processes with 'torchrun --nproc_per_node N -m DiffusionPEFTLib …', "
                         "or unset WORLD_SIZE.")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if device.startswith("cuda:"):
            raise InputError(f"--device {device}: under torchrun every process uses the GPU of its LOCAL_RANK.",
                             hint="Use --device cuda (or auto); choose GPUs with CUDA_VISIBLE_DEVICES.")
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise InputError(f"Process {local_rank} on this node has no GPU ({torch.cuda.device_count()} visible).",
                             hint="Start at most one process per GPU (--nproc_per_node), or use --device cpu.")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    dist.init_process_group("nccl" if cuda else "gloo")
    return device


def stop() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _collective(function):
    """A collective step: when another process is gone (killed, out of memory, stopped with an error), the
    backend's RuntimeError becomes a message that says so and how to continue, not a crash report."""
    @functools.wraps(function)
    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except RuntimeError as error:  # gloo: "Connection reset by peer"; NCCL: DistBackendError
            detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise JobCancelled(f"Process {world().rank} lost contact with the other processes: one of them stopped "
                               f"or died ({detail}).",
                               hint="Look for the first error of the other processes; then run the same torchrun "
                               "command with --resume to continue from the last checkpoint.") from None
    return guarded


def _device() -> torch.device:
    """Where small collective tensors live: the current GPU for NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


@_collective
def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Replace every parameter's gradient by its mean over the processes (one flat all-reduce per bucket).
    A parameter with a gradient on some process only gets zeros elsewhere; one with none anywhere keeps none."""
    size = world().size
    if size == 1:
        return
    present = torch.tensor([float(p.grad is not None) for p in params], device=_device())
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    grads = []
    for param, anywhere in zip(params, present.tolist()):
        if anywhere:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grads.append(param.grad)
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= size
        offset = 0
        for grad in bucket:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def _buckets(grads: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Consecutive gradients of one dtype and device, at most BUCKET_ELEMENTS elements each (one may be larger)."""
    bucket: list[torch.Tensor] = []
    count = 0
    for grad in grads:
        if bucket and (count + grad.numel() > BUCKET_ELEMENTS or grad.dtype != bucket[0].dtype
                       or grad.device != bucket[0].device):
            yield bucket
            bucket, count = [], 0
        bucket.append(grad)
        count += grad.numel()
    if bucket:
        yield bucket


@_collective
def sums(values: list[float]) -> list[float]:
    """Each of ``values`` summed over the processes (e.g. the loss, which every process reports as the mean)."""
    if world().size == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


@_collective
def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any (a cancel on one stops all)."""
    if world().size == 1:
        return flag
    tensor = torch.tensor([float(flag)], device=_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


@_collective
def count_processes(flag: bool) -> int:
    """On how many processes ``flag`` is true."""
    if world().size == 1:
        return int(flag)
    tensor = torch.tensor([float(flag)], device=_device())
    dist.all_reduce(tensor)
    return int(tensor.item())


@_collective
def broadcast_(tensors: list[torch.Tensor]) -> None:
    """Copy the main process's values of ``tensors`` into every process's (in place)."""
    if world().size == 1:
        return
    for tensor in tensors:
        if tensor.is_contiguous():
            dist.broadcast(tensor, src=0)
        else:
            contiguous = tensor.contiguous()
            dist.broadcast(contiguous, src=0)
            tensor.copy_(contiguous)


@_collective
def barrier() -> None:
    if world().size > 1:
        dist.barrier()


@_collective
def gather_lists(items: list) -> list:
    """Every process's ``items`` (picklable), concatenated in rank order, on every process."""
    if world().size == 1:
        return list(items)
    gathered: list = [None] * world().size
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]


@_collective
def raise_first_error(error: DiffusionPEFTError | None) -> None:
    """Called by every process after a step that may fail on some: raise, on every process, the error of the
    lowest rank that met one (so the main process reports it and no process waits for the others forever)."""
    if world().size == 1:
        if error is not None:
            raise error
        return
    payload = None if error is None else (type(error).__name__, error.message, error.hint)
    gathered: list = [None] * world().size
    dist.all_gather_object(gathered, payload)
    for rank, found in enumerate(gathered):
        if found is not None:
            if error is not None and rank == world().rank:
                raise error
            name, message, hint = found
            raise error_class(name)(message + ("" if rank == 0 else f" (process {rank})"), hint=hint)


def error_class(name: str) -> type[DiffusionPEFTError]:
    """The class of the error family called ``name`` (DiffusionPEFTError for an unknown name)."""
    found = getattr(errors, name, None)
    return found if isinstance(found, type) and issubclass(found, DiffusionPEFTError) else DiffusionPEFTError


@contextlib.contextmanager
def shared_work_folder(path: str | os.PathLike, keep_if: str) -> Iterator[Path]:
    """:func:`~DiffusionPEFTLib.files.work_folder` made by the main process; the others wait until it is made,
    then use the same path (on several nodes it must be on a file system they share for ``--resume``)."""
    from .files import work_folder

    if world().is_main:
        with work_folder(path, keep_if=keep_if) as folder:
            barrier()
            yield folder
    else:
        barrier()
        yield Path(path)


class ProcessSink(EventSink):
    """The events of a process other than the main one: silent, except its errors (on stderr, marked with its
    rank), so a failure on any process is seen."""

    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def emit(self, event: dict) -> None:
        if event.get("event") == "error":
            print(f"[process {self.rank}] error ({event.get('kind')}): {event.get('message')}", file=sys.stderr,
                  flush=True)
