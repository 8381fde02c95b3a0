"""Distributed data-parallel training under ``torchrun`` (gloo on CPU, NCCL on GPU).

The same config and command run on one process or on many::

    accord train --method mult --dataset mosi-u                                    # one process
    torchrun --nproc_per_node 2 -m accord.cli train --method mult --dataset mosi-u  # two processes, one machine

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``; the trainer sees
``WORLD_SIZE > 1`` and joins the process group (:func:`init_distributed`). What changes across ranks, and what not:

* ``train.batch_size`` stays the GLOBAL batch size. Every rank draws the same shuffled order (same seeded
  generator), builds the same global batch and keeps its contiguous slice of rows (:func:`shard_rows`), so the
  union of the ranks' slices is exactly the batch a single process would see.
* Each rank runs forward and backward on its slice, then the trainer's gradient hooks (CP, OGM-GE, the monitor),
  then ONE all-reduce of the flattened gradients, each rank's gradient weighted by its share of the batch
  ``n_r / N`` (:func:`allreduce_step`). The averaged gradient is therefore the gradient of the mean loss over the
  global batch, as in one process, also for uneven or empty slices (last batch). The total loss travels in the same
  message, so every rank sees the global loss and a non-finite loss stops all ranks at the same step.
* Evaluation shards the split across ranks and gathers the predictions in order (:func:`gather_rows`), so metrics,
  early stopping and checkpoint selection are identical on every rank.
* Only global rank 0 writes files (run directory, logs, checkpoints, results). Checkpoints are read by rank 0 and
  broadcast, so other machines need no shared filesystem.

Why not ``torch.nn.parallel.DistributedDataParallel``? Its reducer averages gradients DURING backward, before the
trainer's ``after_backward`` hooks run. Hooks that edit gradients from per-batch statistics (CP's projection,
OGM-GE's coefficients) would then edit an already-averaged gradient with rank-local statistics, and the replicas
would drift apart. Reducing after the hooks keeps every hook correct, handles empty slices and double backward
(CP), and costs one flattened all-reduce per step.

Differences from one process that remain (all documented in docs/distributed.md): dropout masks are drawn per
rank; batch-level statistics inside a model or loss (MISA's CMD, the statistical loss of CP+SL, Self-MM's label
memory) see the rank's slice; float reductions happen in a different order. Metrics therefore match a
single-process run within a tolerance, and match exactly where the model has none of these.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import os
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

from accord.core.errors import AccordError, ConfigError

T = TypeVar("T")
P = ParamSpec("P")


class DistributedError(AccordError):
    """A rank of a distributed run cannot go on: a collective failed (another rank died, was killed or lost its
    connection) or torchrun stopped this rank (SIGTERM, which it sends to every rank when one fails). One line,
    naming the rank; the run resumes from its last checkpoint with ``--resume``."""


RESUME_HINT = "the run resumes from its last checkpoint with --resume"


def _collective(name: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Turn the error of a failed collective (gloo's "Connection closed by peer", NCCL's DistBackendError, a
    timeout) into a one-line :class:`DistributedError` naming this rank and the collective."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except RuntimeError as err:  # DistBackendError is a RuntimeError
                raise peer_lost(name, err) from None

        return inner

    return wrap


_STOPPING: list[bool] = [False]
"""Set once this rank is stopping (a collective failed, or SIGTERM came): a later SIGTERM is then ignored, so the
clean-up (the error line, the lock, leaving the group) is never interrupted by a second exception."""


def peer_lost(collective: str, err: BaseException) -> DistributedError:
    """The one-line error of a collective that failed on this rank (from now on SIGTERM is ignored)."""
    _STOPPING[0] = True
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else env_rank()
    first = " ".join((str(err).strip().splitlines() or [type(err).__name__])[0].split())
    first = re.sub(r"^\[[^\]]*\.(cc|cpp|h|hpp):\d+\]\s*", "", first)  # gloo's "[.../pair.cc:537] " source location
    first = first.split(". ", 1)[0][:200]  # its first sentence ("Read error [...]: Connection reset by peer")
    return DistributedError(f"rank {rank}: {collective} failed: another rank stopped or the connection to it was "
                            f"lost ({first}); {RESUME_HINT}")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job. ``world_size == 1`` means single-process (every call is a no-op)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ collectives
    @_collective("barrier")
    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @_collective("broadcast_object")
    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled between the job's own processes)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return cast(T, box[0])  # rank 0's obj, of type T on every rank

    @_collective("all_gather_object")
    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    @_collective("broadcast_module")
    def broadcast_module(self, module: nn.Module) -> None:
        """Overwrite every parameter and buffer with rank 0's values."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in module.state_dict().values():
                dist.broadcast(t, src=0)

    @_collective("all_reduce_sum")
    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (returns a new tensor)."""
        if not self.enabled:
            return values
        out = values.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


SINGLE = DistContext()


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment WORLD_SIZE: expected an integer, got {raw!r}") from None


def env_rank() -> int:
    """Global rank from the environment (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0") or 0)


def init_distributed(device: str, backend: str = "auto", timeout_minutes: float = 30.0) -> DistContext:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; return :data:`SINGLE` otherwise.

    ``backend="auto"`` picks NCCL for CUDA devices and gloo otherwise. A process group that is already initialised
    (e.g. by a caller that set one up itself) is reused.
    """
    world = env_world_size()
    if world <= 1 and not dist.is_initialized():
        return SINGLE
    if not dist.is_available():
        raise ConfigError("train.distributed: WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    is_cuda = torch.device(device).type == "cuda"
    chosen = backend if backend != "auto" else ("nccl" if is_cuda else "gloo")
    if chosen == "nccl" and not is_cuda:
        raise ConfigError(f"train.distributed.backend: 'nccl' needs a CUDA train.device, got {device!r}; use gloo")
    if is_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise ConfigError(f"environment {key}: not set; launch distributed runs with torchrun "
                                  f"(WORLD_SIZE={world})")
        dist.init_process_group(chosen, timeout=datetime.timedelta(minutes=timeout_minutes))
        atexit.register(_destroy)  # leave the group cleanly when the process ends
        _stop_on_sigterm()
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       backend=dist.get_backend())


def rank_device(device: str, ctx: DistContext) -> str:
    """The device of this rank: ``cuda`` becomes ``cuda:<LOCAL_RANK>``; anything else is unchanged."""
    dev = torch.device(device)
    if ctx.enabled and dev.type == "cuda" and dev.index is None:
        return f"cuda:{ctx.local_rank}"
    return device


def shard_rows(n: int, ctx: DistContext) -> slice:
    """This rank's contiguous slice of ``n`` rows; slices of the ranks partition ``range(n)`` in rank order.

    Sizes differ by at most one; with ``n < world_size`` the last ranks get empty slices.
    """
    if not ctx.enabled:
        return slice(0, n)
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return slice(start, start + base + (1 if ctx.rank < extra else 0))


@_collective("the gradient all_reduce")
def allreduce_step(params: list[nn.Parameter], weight: float, loss: torch.Tensor | None,
                   ctx: DistContext) -> float:
    """Average gradients over ranks, weighted by each rank's share of the global batch; return the global loss.

    Every parameter's ``.grad`` becomes ``Σ_r w_r · g_r`` with ``w_r = n_r / N`` (a missing gradient counts as
    zero), which is the gradient of the mean loss over the global batch. ``loss`` (this rank's mean loss, ``None``
    for an empty slice) is reduced in the same message as ``Σ_r w_r · loss_r``. One flattened all-reduce per step.
    """
    local_loss = 0.0 if loss is None else float(loss.detach())
    if not ctx.enabled:
        return local_loss
    device = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params else torch.float32
    flats = [(p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=device, dtype=p.dtype))
             for p in params]
    # per parameter: did this rank produce a gradient? (a parameter no rank touched keeps grad None, so AdamW skips
    # it exactly as in one process instead of applying weight decay to it)
    has_grad = torch.tensor([float(p.grad is not None) for p in params], device=device, dtype=dtype)
    buf = torch.cat([*flats, has_grad, torch.tensor([local_loss], device=device, dtype=dtype)])
    buf.mul_(weight)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    offset = sum(p.numel() for p in params)
    touched = buf[offset:offset + len(params)] > 0
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if not bool(touched[i]):
            p.grad = None
        elif p.grad is None:
            p.grad = buf[offset:offset + n].view_as(p).clone()
        else:
            p.grad.copy_(buf[offset:offset + n].view_as(p))
        offset += n
    return float(buf[-1])


def _stop_on_sigterm() -> None:
    """Make SIGTERM (torchrun sends it to every rank when one fails) raise a one-line :class:`DistributedError`,
    so the rank's ``finally`` blocks run (the run lock is released) and it leaves the process group at exit instead
    of vanishing mid-write. Only where SIGTERM has its default action and in the main thread; once the rank is
    stopping (this error, or a failed collective's) further SIGTERMs are ignored, so no second exception interrupts
    the clean-up (torchrun SIGKILLs a rank that does not end within its grace period)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def handler(signum: int, frame: Any) -> None:
        if _STOPPING[0]:
            return  # already stopping with one error: let the clean-up finish (torchrun kills after its grace)
        _STOPPING[0] = True
        raise DistributedError(f"rank {env_rank()}: stopped by SIGTERM (torchrun stops every rank when one of them "
                               f"fails: see that rank's error); {RESUME_HINT}")

    signal.signal(signal.SIGTERM, handler)


LEAVE_TIMEOUT = datetime.timedelta(seconds=120)
"""How long a rank waits at exit for the others to arrive before it leaves the group anyway."""


def _destroy() -> None:
    """Leave the process group together (registered with atexit by :func:`init_distributed`).

    The ranks first meet at a barrier, so that no rank tears its group down while another is still working (rank 0
    writes the run's files after the last collective): a gloo rank that destroyed its group early was seen to abort
    at exit ("terminate called without an active exception") in about 1 of 12 two-rank runs. With gloo the barrier
    has a timeout, so a rank whose peers died does not wait for long.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=LEAVE_TIMEOUT)
        else:
            dist.barrier()
    except (RuntimeError, DistributedError):
        pass  # a peer is gone (or torchrun stops this rank): leave anyway
    finally:
        dist.destroy_process_group()
