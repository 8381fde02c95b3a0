"""Shared fixtures: the real-data folder and small synthetic datasets."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.data.dataset import MultimodalDataset, make_split
from accord.data.safe import MANIFEST
from accord.data.safe_files import sha256_file

SHARED_DATA = Path(os.environ.get("ACCORD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def one_thread():  # type: ignore[no-untyped-def]
    """torch on one thread for a module of tiny-tensor tests (several times faster than two on a shared 2-core
    machine); the previous thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder ``../shared/data``; tests that need it skip with the reason where it is absent."""
    if not (SHARED_DATA / "mosi" / "bclstm").is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set ACCORD_SHARED_DATA to its location)")
    return SHARED_DATA


def tiny_dataset(n: int = 24, dims: tuple[int, int, int] = (6, 4, 5), t: tuple[int, int, int] = (5, 7, 3),
                 seed: int = 0) -> MultimodalDataset:
    """A small random dataset with unaligned lengths, for unit tests."""
    g = torch.Generator().manual_seed(seed)
    splits = {}
    for split in ("train", "valid", "test"):
        feats = {m: torch.randn(n, tt, d, generator=g) for m, tt, d in zip(("text", "audio", "visual"), t, dims,
                                                                          strict=True)}
        lengths = {m: torch.randint(1, tt + 1, (n,), generator=g) for m, tt in zip(("text", "audio", "visual"), t,
                                                                                     strict=True)}
        for m in feats:
            mask = torch.arange(feats[m].shape[1]).unsqueeze(0) < lengths[m].unsqueeze(1)
            feats[m] = feats[m] * mask.unsqueeze(-1)
        y = (torch.rand(n, generator=g) * 6 - 3).round(decimals=1)
        splits[split] = make_split(feats, y, ids=[f"{split}_{i}" for i in range(n)], lengths=lengths,
                                   raw_text=["" for _ in range(n)])
    return MultimodalDataset("tiny", splits)


def rewrite_npz(folder: Path, split: str, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Edit ``split``'s arrays of a safe-format folder with ``change`` and fix the manifest's checksum, so that the
    content checks (not the checksum) must catch the edit."""
    file = folder / f"{split}.npz"
    with np.load(file) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(file, **arrays)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["splits"][split]["sha256"] = sha256_file(file)
    (folder / MANIFEST).write_text(json.dumps(manifest))
