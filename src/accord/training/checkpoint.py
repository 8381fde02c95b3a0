"""Checkpoints: best weights as safetensors, full training state for ``--resume``; all writes atomic.

``last.pt`` holds only tensors and plain Python containers, so it loads with ``torch.load(weights_only=True)``
(no arbitrary code runs when a checkpoint is opened).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from accord.core.errors import CheckpointError
from accord.core.io import atomic_write_bytes


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
    """Write a training state (tensors and plain containers only) atomically with ``torch.save``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | Path) -> dict[str, Any]:
    """Load a training state with ``weights_only=True``; a corrupt file is a one-line CheckpointError."""
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{p}: training state not found") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"{p}: unreadable training state ({str(err).splitlines()[0][:120]})") from None
