"""FusedAdamW: torch's fused AdamW kernel called directly, bit for bit torch's ``AdamW(fused=True)``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch

from accord.training.optim import FusedAdamW

pytestmark = pytest.mark.usefixtures("one_thread")


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g)) for shape in ((5, 3), (3,), (4, 2, 2), (7,))]


def _groups(ps: list[torch.nn.Parameter]) -> list[dict[str, Any]]:
    return [{"params": ps[:2], "lr": 1e-2, "weight_decay": 0.1}, {"params": ps[2:], "lr": 3e-3, "weight_decay": 0.0}]


def _grads(step: int, ps: list[torch.nn.Parameter]) -> None:
    """Gradients of step ``step``: parameter 3 has none at steps 0-1 (its state starts at step 2), parameter 1 none
    at step 3 (skipped that step, as an unused query projection)."""
    g = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(ps):
        p.grad = None if (i == 3 and step < 2) or (i == 1 and step == 3) else torch.randn(p.shape, generator=g)


def _run(make: Callable[[list[dict[str, Any]]], torch.optim.Optimizer], steps: int = 6
         ) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    ps = _params()
    opt = make(_groups(ps))
    for k in range(steps):
        _grads(k, ps)
        if k == 4:
            opt.param_groups[0]["lr"] = 5e-3  # a schedule's change between steps
        opt.step()
    return ps, opt


def _same_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)


def test_fused_adamw_equals_torch_fused_adamw_bit_for_bit() -> None:
    """Two groups (own lr and weight decay), a parameter whose state starts late, one skipped for a step and an lr
    changed between steps: parameters, moments and step counts all equal torch's."""
    want, ref = _run(lambda g: torch.optim.AdamW(g, fused=True))
    got, opt = _run(lambda g: FusedAdamW(g))
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    _same_state(opt, ref)
    assert float(opt.state[got[1]]["step"]) == 5.0 and float(opt.state[got[3]]["step"]) == 4.0


def test_fused_adamw_resumes_from_a_state_dict_bit_for_bit() -> None:
    ps, opt = _run(lambda g: FusedAdamW(g), steps=3)
    ps2 = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = FusedAdamW(_groups(ps2))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # a saved state (load_state_dict keeps the tensors)
    for k in range(3, 6):
        for params, o in ((ps, opt), (ps2, opt2)):
            _grads(k, params)
            o.step()
    for a, b in zip(ps, ps2, strict=True):
        assert torch.equal(a, b)
    _same_state(opt, opt2)


def test_the_lean_step_runs_once_every_parameter_has_its_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's own step runs only where a parameter gets its first gradient (and when a step hook is registered);
    every other step is the direct kernel call."""
    calls: list[int] = []
    torch_step = torch.optim.AdamW.step

    def counting(self: torch.optim.Optimizer, closure: Any = None) -> Any:
        calls.append(1)
        return torch_step(self, closure)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    _run(lambda g: FusedAdamW(g))
    assert len(calls) == 2  # step 0 (states of parameters 0-2) and step 2 (parameter 3's first gradient)
    ps = _params()
    opt = FusedAdamW(_groups(ps))
    opt.register_step_pre_hook(lambda o, a, k: None)
    calls.clear()
    for k in range(4):
        _grads(k, ps)
        opt.step()
    assert len(calls) == 4


def test_lean_step_counters_are_packed_and_survive_a_saved_state(tmp_path: Any) -> None:
    """After a lean step a group's step counters are 0-d views of one tensor (incremented by one op); a parameter
    leaving the set repacks them with the right counts; the state saved with ``torch.save`` loads with
    ``weights_only=True`` and continues bit for bit torch's."""
    ps, opt = _run(lambda g: FusedAdamW(g), steps=6)
    steps = [opt.state[p]["step"] for p in ps[2:]]  # group 1: both parameters stepped at step 5
    assert steps[0].untyped_storage().data_ptr() == steps[1].untyped_storage().data_ptr()
    assert [float(s) for s in steps] == [6.0, 4.0]
    path = tmp_path / "opt.pt"
    torch.save(opt.state_dict(), path)
    ps2 = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = FusedAdamW(_groups(ps2))
    opt2.load_state_dict(torch.load(path, weights_only=True))
    ref_ps = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    ref = torch.optim.AdamW(_groups(ref_ps), fused=True)
    ref.load_state_dict(torch.load(path, weights_only=True))
    for k in range(6, 9):
        for params, o in ((ps2, opt2), (ref_ps, ref)):
            _grads(k, params)
            if k == 7:
                params[0].grad = None  # leaves the set for one step: its counter stays
            o.step()
    for a, b in zip(ps2, ref_ps, strict=True):
        assert torch.equal(a, b)
    _same_state(opt2, ref)
    assert float(opt2.state[ps2[0]]["step"]) == 8.0 and float(opt2.state[ps2[1]]["step"]) == 8.0
