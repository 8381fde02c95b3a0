"""Distributed data-parallel training: slicing, the weighted gradient reduce, and torchrun vs one process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from accord.core.types import Batch
from accord.training.distributed import SINGLE, DistContext, allreduce_step, init_distributed, shard_rows


def test_shard_rows_partition_every_batch_in_rank_order() -> None:
    for world in (1, 2, 3, 4):
        for n in range(0, 11):
            slices = [shard_rows(n, DistContext(rank=r, world_size=world)) for r in range(world)]
            rows = [i for s in slices for i in range(n)[s]]
            assert rows == list(range(n)), (n, world)
            sizes = [len(range(n)[s]) for s in slices]
            assert max(sizes) - min(sizes) <= 1
    # hand values: 5 rows over 2 ranks -> 3 + 2; 1 row over 2 ranks -> 1 + 0 (an empty slice)
    assert shard_rows(5, DistContext(0, 2)) == slice(0, 3)
    assert shard_rows(5, DistContext(1, 2)) == slice(3, 5)
    assert shard_rows(1, DistContext(1, 2)) == slice(1, 1)


def test_batch_select_keeps_padding_and_rows() -> None:
    feats = {m: torch.arange(4 * 3 * 2, dtype=torch.float32).view(4, 3, 2) for m in ("text", "audio", "visual")}
    mask = {m: torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool) for m in feats}
    b = Batch(features=feats, mask=mask, present=torch.ones(4, 3, dtype=torch.bool), label=torch.arange(4.0),
              ids=["a", "b", "c", "d"], extras={"conflict": torch.tensor([0, 1, 0, 1])})
    s = b.select(slice(1, 3))
    assert s.ids == ["b", "c"] and s.label.tolist() == [1.0, 2.0]
    assert s.features["text"].shape == (2, 3, 2)  # padding of the global batch kept
    assert torch.equal(s.mask["audio"], mask["audio"][1:3]) and s.extras["conflict"].tolist() == [1, 0]


def test_single_process_context_is_a_no_op() -> None:
    assert init_distributed("cpu") is SINGLE  # no WORLD_SIZE in the test environment
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.tensor([1.0, 2.0])
    assert allreduce_step([p], 1.0, torch.tensor(0.5), SINGLE) == 0.5
    assert p.grad.tolist() == [1.0, 2.0]
    assert SINGLE.broadcast_object(3) == 3 and SINGLE.all_gather_object("x") == ["x"]


@pytest.mark.parametrize(("env", "backend", "needle"), [
    ({"WORLD_SIZE": "two"}, "auto", "environment WORLD_SIZE: expected an integer, got 'two'"),
    ({"WORLD_SIZE": "2"}, "nccl", "train.distributed.backend: 'nccl' needs a CUDA train.device"),
    ({"WORLD_SIZE": "2"}, "gloo", "environment MASTER_ADDR: not set; launch distributed runs with torchrun"),
])
def test_bad_distributed_setup_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                          backend: str, needle: str) -> None:
    from accord.core.errors import ConfigError

    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        init_distributed("cpu", backend)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not dist.is_initialized()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reduce_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    ctx = init_distributed("cpu")
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2))
    untouched = torch.nn.Parameter(torch.zeros(1))
    # rank 0: 3 of the 4 rows, gradients for a and b, loss 2.0; rank 1: 1 row, gradient for a only, loss 6.0
    if rank == 0:
        a.grad, b.grad, weight, loss = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 8.0]), 0.75, 2.0
    else:
        a.grad, weight, loss = torch.tensor([5.0, 6.0, 7.0]), 0.25, 6.0
    total = allreduce_step([a, b, untouched], weight, torch.tensor(loss), ctx)
    rec = {"a": a.grad.tolist(), "b": b.grad.tolist(), "untouched": untouched.grad is None, "total": total,
           "gathered": ctx.all_gather_object(rank * 10), "bcast": ctx.broadcast_object(f"from {rank}")}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(rec))
    dist.destroy_process_group()


def test_allreduce_step_weights_each_rank_by_its_share(tmp_path: Path) -> None:
    mp.spawn(_reduce_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        rec = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # hand values: 0.75·[1,2,3] + 0.25·[5,6,7] = [2, 3, 4]; b: 0.75·[4,8] + 0.25·0 = [3, 6]
        assert rec["a"] == pytest.approx([2.0, 3.0, 4.0])
        assert rec["b"] == pytest.approx([3.0, 6.0])
        assert rec["untouched"] is True  # no rank produced a gradient: stays None (AdamW skips it)
        assert rec["total"] == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)
        assert rec["gathered"] == [0, 10] and rec["bcast"] == "from 0"


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path: Path) -> None:
    """2 CPU ranks (gloo) vs 1 process, same config: the same first gradient, then metrics within a tolerance.

    Batch 33 over 2 ranks gives uneven slices (17 + 16) and a last batch of 4 -> 2 + 2; dropout is off. The first
    step's reduced gradient equals the single-process one to float precision, and the replicas stay identical. After
    that the two runs drift apart by float-reduction order only, which Adam amplifies where a gradient is near zero
    (g / (|g| + eps) turns noise of 1e-9 into a sizeable step; the same drift appears in one process when a batch's
    gradient is summed in two halves), so the later comparisons use tolerances.
    """
    common = ["train", "--method", "early_fusion", "--dataset", "conflictbench",
              "--set", "data.params.n_train=400", "--set", "data.params.n_valid=100", "--set", "data.params.n_test=100",
              "--set", "train.epochs=3", "--set", "train.batch_size=33", "--set", "train.num_threads=1",
              "--set", "train.eval_batch_size=64", "--set", "model.params.dropout=0",
              "--set", "train.log_every_steps=1",
              "--set", f"output.dir={tmp_path / 'runs'}"]
    _run([sys.executable, "-m", "accord.cli", *common, "--set", "name=single"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "accord.cli", *common, "--set", "name=ddp"], tmp_path)
    one, two = tmp_path / "runs" / "single" / "seed_0", tmp_path / "runs" / "ddp" / "seed_0"
    r1, r2 = json.loads((one / "results.json").read_text()), json.loads((two / "results.json").read_text())
    assert r2["world_size"] == 2 and "world_size" not in r1
    logs1 = [json.loads(x) for x in (one / "log.jsonl").read_text().splitlines()]
    logs2 = [json.loads(x) for x in (two / "log.jsonl").read_text().splitlines()]
    steps1, steps2 = [r for r in logs1 if r["type"] == "step"], [r for r in logs2 if r["type"] == "step"]
    assert len(steps1) == len(steps2) == 3 * 13  # 400 rows / 33 -> 13 steps per epoch; only rank 0 wrote the log
    # the reduced gradient of step 1 is the single-process gradient (norm before clipping, logged after the reduce)
    assert steps2[0]["grad_norm"] == pytest.approx(steps1[0]["grad_norm"], rel=1e-5)
    epochs1, epochs2 = [r for r in logs1 if r["type"] == "epoch"], [r for r in logs2 if r["type"] == "epoch"]
    assert len(epochs1) == len(epochs2) == 3
    for a, b in zip(epochs1, epochs2, strict=True):  # epoch loss: mean over both ranks' rows
        assert b["loss/total"] == pytest.approx(a["loss/total"], rel=5e-2)
        assert b["valid/MAE"] == pytest.approx(a["valid/MAE"], abs=0.05)
    d1, d2 = np.load(one / "diagnostics.npz"), np.load(two / "diagnostics.npz")
    assert (d1["test/id"] == d2["test/id"]).all()  # gathered predictions come back in dataset order
    gap = float(np.abs(d2["test/prediction"] - d1["test/prediction"]).mean())
    assert gap < 0.15  # labels span [-3, 3]
    for split in ("valid", "test"):
        assert r2[split]["MAE"] == pytest.approx(r1[split]["MAE"], abs=0.05)
        assert r2[split]["Corr"] == pytest.approx(r1[split]["Corr"], abs=0.05)
    assert r2["replicas_in_sync"] is True  # both ranks ended with the same parameters
    ck = torch.load(two / "last.pt", map_location="cpu", weights_only=True)
    assert len(ck["rng_torch_ranks"]) == 2  # every rank's random state is kept for --resume
    print("ddp vs single: mean |prediction gap|", round(gap, 4),
          {s: (r1[s]["MAE"], r2[s]["MAE"], r1[s]["Corr"], r2[s]["Corr"]) for s in ("valid", "test")})


@pytest.mark.slow
def test_torchrun_accumulated_windows_reduce_to_the_one_process_gradient(tmp_path: Path) -> None:
    """``train.accumulate_batches=2`` over 2 ranks: each rank weights a batch by ITS rows' share of the window
    (counted over both ranks) and the window's gradient is all-reduced once, as a plain sum. Its norm at every
    window of the first epoch equals one process's (batch 33 -> slices 17 + 16, windows of 66 rows, a last window
    of one batch of 4 -> 2 + 2)."""
    common = ["train", "--method", "early_fusion", "--dataset", "conflictbench",
              "--set", "data.params.n_train=400", "--set", "data.params.n_valid=64", "--set", "data.params.n_test=64",
              "--set", "train.epochs=1", "--set", "train.batch_size=33", "--set", "train.num_threads=1",
              "--set", "model.params.dropout=0", "--set", "train.accumulate_batches=2",
              "--set", "train.log_every_steps=1", "--set", "train.lr=1e-6",
              "--set", f"output.dir={tmp_path / 'runs'}"]
    _run([sys.executable, "-m", "accord.cli", *common, "--set", "name=single"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "accord.cli", *common, "--set", "name=ddp"], tmp_path)
    norms = []
    for name in ("single", "ddp"):
        lines = (tmp_path / "runs" / name / "seed_0" / "log.jsonl").read_text().splitlines()
        norms.append([r["grad_norm"] for r in map(json.loads, lines) if r["type"] == "step" and "grad_norm" in r])
    assert len(norms[0]) == len(norms[1]) == 7  # 13 batches in windows of 2: one norm per optimiser step
    for a, b in zip(*norms, strict=True):  # (a learning rate of 1e-6 keeps the runs' weights within float noise)
        assert b == pytest.approx(a, rel=1e-4)


@pytest.mark.slow
def test_torchrun_interrupted_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    """Kill a 2-rank run after epoch 3 (the whole process group, like a lost job) and resume it: the result equals
    that of the uninterrupted run (every rank's random state is restored)."""
    import signal
    import time

    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "accord.cli",
            "train", "--method", "late_fusion", "--dataset", "conflictbench", "--set", "data.params.n_train=300",
            "--set", "train.epochs=12", "--set", "train.early_stopping.patience=50", "--set", "train.num_threads=1",
            "--set", f"output.dir={tmp_path / 'runs'}"]
    _run([*base, "--set", "name=full"], tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen([*base, "--set", "name=cut"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    log = tmp_path / "runs" / "cut" / "seed_0" / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and log.read_text().count('"type": "epoch"') >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (log.parent / "results.json").exists(), "the run finished before it could be interrupted"
    _run([*base, "--set", "name=cut", "--resume"], tmp_path)
    full = json.loads((tmp_path / "runs" / "full" / "seed_0" / "results.json").read_text())
    cut = json.loads((log.parent / "results.json").read_text())
    assert cut["test"] == full["test"] and cut["best_epoch"] == full["best_epoch"]
    assert log.read_text().count('"type": "epoch"') == 12  # no duplicated or lost epoch lines


@pytest.mark.slow
def test_a_killed_peer_ends_the_other_rank_with_a_one_line_error(tmp_path: Path) -> None:
    """SIGKILL rank 1 of a 2-rank run mid-training: rank 0 stops with one line naming itself (its collective failed,
    or torchrun stopped it with SIGTERM), without a traceback of its own, releases the run lock, and the run
    resumes to the end."""
    import signal
    import time

    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "accord.cli",
            "train", "--method", "late_fusion", "--dataset", "conflictbench", "--set", "data.params.n_train=300",
            "--set", "train.epochs=400", "--set", "train.early_stopping.patience=1000", "--set", "train.num_threads=1",
            "--set", f"output.dir={tmp_path / 'runs'}", "--set", "name=r"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(base, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    log = tmp_path / "runs" / "r" / "seed_0" / "log.jsonl"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if log.is_file() and log.read_text().count('"type": "epoch"') >= 2:
                break
            time.sleep(0.05)
        rank1 = [pid for pid in _descendants(proc.pid) if _environ(pid).get("RANK") == "1"]
        assert len(rank1) == 1, "rank 1 not found"
        os.kill(rank1[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    errors = [ln for ln in out.splitlines() if ln.startswith("error: rank 0: ")]
    assert len(errors) == 1, out[-3000:]
    assert re.fullmatch(r"error: rank 0: (.+ failed: another rank stopped or the connection to it was lost \([^\[].+\)"
                        r"|stopped by SIGTERM \(torchrun stops every rank when one of them fails: see that rank's "
                        r"error\)); the run resumes from its last checkpoint with --resume", errors[0]), errors[0]
    assert 'File "' + str(Path(accord_src()) / "accord") not in out  # no traceback through Accord's code
    assert not (tmp_path / "runs" / "r" / ".lock").exists()  # rank 0 released the run lock
    assert "exitcode  : -6" not in out  # rank 0 did not abort at process-group teardown
    print(out[-3000:])  # what a user sees (pytest -rP)


def accord_src() -> str:
    import accord

    return str(Path(accord.__file__).resolve().parents[1])


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = (Path("/proc") / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)
