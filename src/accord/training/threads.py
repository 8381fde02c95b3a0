"""Accord's thread policy: the threads of the processes Accord starts add up to at most the cores it is given.

* **The cores Accord is given** (:func:`cores`): ``ACCORD_CORES`` when set (a whole number ≥ 1: the share of the
  machine you give Accord), else the cores this process may run on (``os.sched_getaffinity(0)``, so ``taskset`` and
  container CPU sets count; ``os.cpu_count()`` where affinity is unknown).
* **Threads per process** (:func:`threads_per_process`): when ``ACCORD_CORES=C`` is set, the P processes that run
  at once share the C cores, ``C // P`` torch threads each; when it is not set, :data:`DEFAULT_THREADS` (one) each,
  because Accord cannot know what else runs on the machine, and ``benchmarks/results/threads.md`` shows what
  happens when it guesses wrong: next to one other CPU-bound process on 2 cores, a 2-thread training ran several
  times slower per epoch than a 1-thread one, while 1 thread kept its speed. On an idle machine the second thread
  gains up to 1.7× on long sequences and nothing on small models; ``ACCORD_CORES`` (or ``train.num_threads``)
  takes it where the machine is yours.
* **One training** (``Trainer.fit``, :func:`resolve`): an explicit ``train.num_threads`` always wins; null means
  :func:`default_threads`, the share of one process, where under ``torchrun`` the ``LOCAL_WORLD_SIZE`` ranks of a
  machine are the processes that share it. The trainer restores the caller's thread count afterwards.
* **Processes Accord starts at once** (sweep workers, the sweep's final re-run; :func:`split`): at most
  :func:`cores` of them (more is a one-line error naming the option), each with :func:`threads_per_process`.
* **torchrun** starts the ranks, not Accord: give it ``--nproc_per_node`` ≤ the cores and leave
  ``train.num_threads`` null; torchrun's own ``OMP_NUM_THREADS=1`` only sizes the OpenMP pool until the trainer
  sets the torch threads.

``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning) is read when the OpenMP runtime starts
(at ``import torch``), so only a launcher can set it; it is measured in ``benchmarks/results/threads.md``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from accord.core.errors import ConfigError

CORES_ENV = "ACCORD_CORES"
"""Environment variable: the number of cores Accord may use (its processes' threads add up to at most this)."""

DEFAULT_THREADS = 1
"""Torch threads of each process when ``ACCORD_CORES`` is not set and ``train.num_threads`` is null
(benchmarks/results/threads.md)."""


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity; the CPU count where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cores_given() -> int | None:
    """``ACCORD_CORES`` as a number (a one-line error when it is not a whole number ≥ 1); ``None`` when unset."""
    raw = os.environ.get(CORES_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"environment {CORES_ENV}: expected a whole number of cores >= 1, got {raw!r}")
    return n


def cores() -> int:
    """The cores Accord is given: ``ACCORD_CORES`` when set, else :func:`machine_cores`."""
    return cores_given() or machine_cores()


def local_processes() -> int:
    """Training processes of this job on this machine: torchrun's ``LOCAL_WORLD_SIZE`` (1 outside torchrun)."""
    raw = os.environ.get("LOCAL_WORLD_SIZE", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def threads_per_process(processes: int) -> int:
    """Torch threads for each of ``processes`` processes running at once: ``ACCORD_CORES // processes`` when
    ``ACCORD_CORES`` is set (at least 1), else :data:`DEFAULT_THREADS`."""
    given = cores_given()
    return DEFAULT_THREADS if given is None else max(1, given // max(1, processes))


def default_threads() -> int:
    """Threads of one training when ``train.num_threads`` is null: its share, the ``LOCAL_WORLD_SIZE`` ranks of a
    torchrun job on this machine sharing it (:func:`threads_per_process`)."""
    return threads_per_process(local_processes())


def resolve(num_threads: int | None) -> int:
    """The torch threads a training uses: ``train.num_threads`` when set, else :func:`default_threads`."""
    return int(num_threads) if num_threads else default_threads()


@contextlib.contextmanager
def using(num_threads: int | None) -> Iterator[int]:
    r"""Within the block torch uses :func:`resolve`\ ``(num_threads)`` threads (yielded); the caller's count comes
    back afterwards (a run's ``train.num_threads`` applies to that run only)."""
    import torch

    before = torch.get_num_threads()
    n = resolve(num_threads)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def split(processes: int, what: str) -> int:
    """Threads for each of ``processes`` processes that Accord starts at once (:func:`threads_per_process`); more
    processes than the cores given is a one-line error naming ``what`` (the option that asked for them)."""
    given = cores()
    if processes > given:
        raise ConfigError(f"{what}: {processes} processes at once, but Accord is given {given} core(s) "
                          f"({_source()}); use at most {given}, or set {CORES_ENV} to the cores it may use")
    return threads_per_process(processes)


def _source() -> str:
    return f"{CORES_ENV}={os.environ[CORES_ENV].strip()}" if os.environ.get(CORES_ENV, "").strip() \
        else "the CPU affinity of this process"
