"""``train.malloc``: glibc's thresholds set once per process by the trainer, so large buffers are reused.

The heap test runs in fresh processes (the setting is process-wide and cannot be undone) and reads glibc's own
statistics (``mallinfo2``): page-fault counts would be the direct measure, but transparent huge pages make them
vary several-fold between identical runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.training import allocator
from accord.training.trainer import Trainer
from test_trainer import tiny_cfg

GLIBC = allocator._libc() is not None


class FakeLibc:
    """Records ``mallopt`` calls; answers ``answer`` (glibc: 1 on success, 0 on a refused value)."""

    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLibc]:
    """A process where tune_malloc has not run yet, talking to a fake C library (its cached answer is cleared
    before and after, so the fake's answer never outlives the test)."""
    fake = FakeLibc()
    allocator.tune_malloc.cache_clear()
    monkeypatch.setattr(allocator, "_libc", lambda: fake)
    yield fake
    allocator.tune_malloc.cache_clear()


def test_tune_malloc_sets_glibc_thresholds_once(fresh: FakeLibc) -> None:
    assert allocator.tune_malloc() is True
    # M_MMAP_THRESHOLD (-3) at 32 MiB, glibc's largest; M_TRIM_THRESHOLD (-1) at 256 MiB
    assert fresh.calls == [(-3, 32 * 2**20), (-1, 256 * 2**20)]
    assert allocator.tune_malloc() is True
    assert len(fresh.calls) == 2  # once per process


def test_tune_malloc_reports_a_refused_value(fresh: FakeLibc) -> None:
    fresh.answer = 0
    assert allocator.tune_malloc() is False


def test_tune_malloc_does_nothing_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    allocator.tune_malloc.cache_clear()
    monkeypatch.setattr(allocator.platform, "system", lambda: "Darwin")
    assert allocator._libc() is None
    assert allocator.tune_malloc() is False
    allocator.tune_malloc.cache_clear()


@pytest.mark.parametrize(("setting", "calls"), [("tuned", 2), ("system", 0)])
def test_trainer_applies_train_malloc(tmp_path: Path, fresh: FakeLibc, setting: str, calls: int) -> None:
    Trainer(tiny_cfg(tmp_path, "train.epochs=1", f"train.malloc={setting}"), progress=False).fit()
    assert len(fresh.calls) == calls


def test_unknown_malloc_setting_is_a_config_error(tmp_path: Path) -> None:
    from accord.core.errors import ConfigError

    with pytest.raises(ConfigError, match="train.malloc"):
        tiny_cfg(tmp_path, "train.malloc=jemalloc")


HEAP = """
import ctypes, json, sys, torch
from accord.training.allocator import tune_malloc


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2


def info():
    m = libc.mallinfo2()
    return {"mapped": m.hblkhd, "heap_free": m.fordblks}


out = {"tuned": sys.argv[1] == "tuned" and tune_malloc(), "start": info()}
x = torch.ones(6_000_000)  # 24 MB: above glibc's initial 128 KiB mmap threshold, below 32 MiB
out["alive"] = info()
del x
out["freed"] = info()
print(json.dumps(out))
"""


def heap(setting: str) -> dict[str, Any]:
    """A fresh process's malloc statistics (mallinfo2) around one 24 MB tensor, with ``train.malloc=setting``."""
    out = subprocess.run([sys.executable, "-c", HEAP, setting], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


MB = 2**20


@pytest.mark.skipif(not GLIBC or not hasattr(allocator._libc(), "mallinfo2"),
                    reason="train.malloc tunes glibc's malloc; mallinfo2 needs glibc >= 2.33")
def test_tuned_malloc_keeps_a_large_freed_buffer_for_the_next_step() -> None:
    plain, tuned = heap("system"), heap("tuned")
    assert tuned["tuned"] is True and plain["tuned"] is False
    # glibc's defaults: the buffer is a fresh mapping, unmapped on free (the next one faults in zeroed pages again)
    assert plain["alive"]["mapped"] - plain["start"]["mapped"] >= 22 * MB
    assert plain["freed"]["mapped"] == plain["start"]["mapped"]
    # tuned: it comes from the heap and stays there, free, when the tensor is released
    assert tuned["alive"]["mapped"] == tuned["start"]["mapped"]
    assert tuned["freed"]["heap_free"] - tuned["alive"]["heap_free"] >= 22 * MB
