"""Checkpoints: best weights as safetensors, full training state for ``--resume``; all writes atomic.

``last.pt`` holds only tensors and plain Python containers, so it loads with ``torch.load(weights_only=True)``
(no arbitrary code runs when a checkpoint is opened). Every file is validated on read: a damaged file, a training
state that lacks a key :meth:`accord.training.trainer.Trainer.restore` reads (or holds a value of the wrong kind) and
weights that do not fit the model are one-line :class:`~accord.core.errors.CheckpointError` naming the file; a
write the system refuses (disk full, read-only folder) is a one-line :class:`~accord.core.errors.StorageError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from accord.core.errors import CheckpointError
from accord.core.io import atomic_write_bytes, atomic_write_with


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write the model's state dict to ``path`` as safetensors, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, st_save(state))


def load_weights(model: nn.Module, path: str | Path, device: torch.device | str = "cpu") -> None:
    """Load safetensors weights from ``path`` into ``model``; errors name the file and the mismatch."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        state = st_load(p.read_bytes())
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(f"{p}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    try:
        model.load_state_dict({k: v.to(device) for k, v in state.items()})
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise CheckpointError(f"{p}: weights do not fit the configured model ({first})") from None


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """Write a training state (tensors and plain containers only) atomically with ``torch.save``, streamed into
    the temporary file (no in-memory copy of the whole state: ``last.pt`` of a 9 M-parameter model with AdamW is
    about 110 MB)."""
    def write(fh: BinaryIO) -> None:
        out = _KeepsWriteError(fh)
        try:
            torch.save(state, cast(IO[bytes], out))  # torch only calls write (and flush)
        except RuntimeError:
            if out.error is not None:  # torch reports a failed write as an unrelated RuntimeError ("unexpected
                raise out.error from None  # pos ..."): the OSError (disk full) becomes the one-line StorageError
            raise

    atomic_write_with(path, write)


class _KeepsWriteError:
    """A binary file for ``torch.save`` that keeps the OSError a write raised (torch replaces it by its own)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.fh.flush()


STATE_KINDS: dict[str, tuple[type, ...]] = {
    "model": (dict,), "optimizer": (dict,), "rng_torch": (torch.Tensor,), "epoch": (int,),
    "best": (float, int, type(None)), "best_epoch": (int,), "bad_epochs": (int,), "step": (int,),
    "elapsed": (float, int),
}
"""The keys of a training state (``last.pt``) that resuming reads, and the kinds of value each may hold."""


GROUP_STATE_KINDS: dict[str, tuple[type, ...]] = {
    "epoch": (int,), "seeds": (list,), "pending": (list,), "rng_torch": (torch.Tensor,),
}
"""The keys of a seed-parallel group's training state (``seed_group.pt``) every such state has."""


def load_state(path: str | Path, kinds: dict[str, tuple[type, ...]] | None = None) -> dict[str, Any]:
    """Load a training state with ``weights_only=True``; a corrupt file, or one lacking a key of ``kinds``
    (default :data:`STATE_KINDS`; :data:`GROUP_STATE_KINDS` for a seed-parallel group) or holding a value of
    another kind, is a one-line CheckpointError naming the file."""
    kinds = STATE_KINDS if kinds is None else kinds
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{p}: training state not found") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        first = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise CheckpointError(f"{p}: unreadable training state ({first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: not a training state (a {type(state).__name__}, expected a mapping)")
    missing = [k for k in kinds if k not in state]
    if missing:
        raise CheckpointError(f"{p}: training state lacks {', '.join(missing)} (damaged, or not a last.pt of "
                              f"Accord); start the run over with --overwrite")
    wrong = [k for k, ok in kinds.items() if not isinstance(state[k], ok) or isinstance(state[k], bool)]
    if wrong:
        raise CheckpointError(f"{p}: training state holds values of the wrong kind for {', '.join(wrong)} (damaged); "
                              f"start the run over with --overwrite")
    return state
