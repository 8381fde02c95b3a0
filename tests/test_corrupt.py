"""Evaluation-time corruptions: identity at level 0, exact drop shares, rates, noise scale, determinism."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES
from accord.data.corrupt import CorruptionSpec, apply_corruption, apply_corruptions, parse_corruption
from accord.data.dataset import SplitData
from conftest import tiny_dataset

KINDS = ("drop", "temporal_drop", "noise")
TARGETS = ("text", "audio", "visual", "all")


def split_of(n: int = 200, seed: int = 0) -> SplitData:
    return tiny_dataset(n=n, seed=seed)["test"]


def real_mask(part: SplitData, m: str) -> torch.Tensor:
    x = part.features[m]
    return torch.arange(x.shape[1]).unsqueeze(0) < part.lengths[m].unsqueeze(1)


def assert_equal_split(a: SplitData, b: SplitData) -> None:
    for m in MODALITIES:
        assert torch.equal(a.features[m], b.features[m])
        assert torch.equal(a.lengths[m], b.lengths[m])
    assert torch.equal(a.labels, b.labels)
    assert a.ids == b.ids


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("modality", TARGETS)
def test_level_zero_is_identity(kind: str, modality: str) -> None:
    part = split_of()
    out = apply_corruption(part, CorruptionSpec(kind=kind, modality=modality, level=0.0))  # type: ignore[arg-type]
    assert out is not part
    assert_equal_split(part, out)
    assert out.features["text"] is not part.features["text"]


@pytest.mark.parametrize("kind", ("drop", "temporal_drop"))
def test_level_one_removes_everything(kind: str) -> None:
    part = split_of()
    out = apply_corruption(part, f"{kind}:all:1")
    for m in MODALITIES:
        assert bool((out.features[m] == 0).all())
        assert bool((out.lengths[m] == 0).all())
    batch = out.batch(torch.arange(len(out)))
    assert not bool(batch.present.any())


@pytest.mark.parametrize("level", [0.1, 0.25, 0.5, 0.77])
def test_drop_share_is_exact(level: float) -> None:
    part = split_of(n=101)
    out = apply_corruption(part, f"drop:audio:{level}")
    dropped = out.lengths["audio"] == 0
    assert int(dropped.sum()) == round(level * 101)
    assert bool((out.features["audio"][dropped] == 0).all())
    kept = ~dropped
    assert torch.equal(out.features["audio"][kept], part.features["audio"][kept])
    assert torch.equal(out.lengths["audio"][kept], part.lengths["audio"][kept])
    for m in ("text", "visual"):  # other modalities untouched
        assert torch.equal(out.features[m], part.features[m])
    present = out.batch(torch.arange(len(out))).present[:, MODALITIES.index("audio")]
    assert torch.equal(present, kept)


def test_drop_all_is_independent_per_modality() -> None:
    part = split_of(n=200)
    out = apply_corruption(part, "drop:all:0.5")
    dropped = {m: out.lengths[m] == 0 for m in MODALITIES}
    for m in MODALITIES:
        assert int(dropped[m].sum()) == 100
    assert not torch.equal(dropped["text"], dropped["audio"])
    # a single-modality drop with the same seed draws what "all" draws for that modality
    single = apply_corruption(part, "drop:audio:0.5")
    assert torch.equal(single.lengths["audio"] == 0, dropped["audio"])


def test_temporal_drop_rate() -> None:
    part = split_of(n=2000)
    level = 0.3
    out = apply_corruption(part, f"temporal_drop:audio:{level}")
    real = real_mask(part, "audio")
    zeroed = (out.features["audio"] == 0).all(dim=-1) & real
    rate = float(zeroed.sum()) / float(real.sum())
    assert abs(rate - level) < 0.02
    # lengths change only for samples that lost every real step
    changed = out.lengths["audio"] != part.lengths["audio"]
    assert bool((out.lengths["audio"][changed] == 0).all())
    all_gone = zeroed.sum(1) == real.sum(1)
    assert torch.equal(changed, all_gone)
    assert int(all_gone.sum()) > 0  # length-1 samples lose everything at rate 0.3
    # padding stays zero
    assert bool((out.features["audio"][~real] == 0).all())


def test_temporal_drop_on_single_step_acts_like_drop() -> None:
    part = split_of(n=1000)
    part.features = {m: x[:, :1] for m, x in part.features.items()}
    part.lengths = {m: torch.ones_like(v) for m, v in part.lengths.items()}
    out = apply_corruption(part, "temporal_drop:visual:0.4")
    gone = out.lengths["visual"] == 0
    assert abs(float(gone.float().mean()) - 0.4) < 0.05
    assert bool((out.features["visual"][gone] == 0).all())
    assert torch.equal(out.features["visual"][~gone], part.features["visual"][~gone])


@pytest.mark.parametrize("level", [0.1, 0.5, 2.0])
def test_noise_std_matches_level(level: float) -> None:
    part = split_of(n=3000)
    # columns on very different scales, so the noise must follow each column's own std
    scale = torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0])
    part.features["visual"] = part.features["visual"] * scale + 5.0 * real_mask(part, "visual").unsqueeze(-1)
    out = apply_corruption(part, f"noise:visual:{level}")
    real = real_mask(part, "visual")
    diff = (out.features["visual"] - part.features["visual"])[real]  # [n_real, D]
    col_std = part.features["visual"][real].std(0, unbiased=False)
    ratio = diff.std(0, unbiased=False) / (level * col_std)
    assert bool(((ratio - 1).abs() < 0.08).all()), ratio
    assert bool((out.features["visual"][~real] == 0).all())  # padding stays zero
    assert torch.equal(out.lengths["visual"], part.lengths["visual"])
    assert torch.equal(out.features["text"], part.features["text"])


def test_deterministic_by_seed() -> None:
    part = split_of()
    for text in ("drop:all:0.3", "temporal_drop:all:0.3", "noise:all:0.3"):
        a = apply_corruption(part, text)
        b = apply_corruption(part, text)
        c = apply_corruption(part, text + ":1")
        assert_equal_split(a, b)
        assert any(not torch.equal(a.features[m], c.features[m]) for m in MODALITIES)


def test_input_not_modified() -> None:
    part = split_of()
    before = copy.deepcopy(part)
    apply_corruptions(part, ["drop:text:0.5", "temporal_drop:all:0.5", "noise:audio:1.0"])
    assert_equal_split(before, part)


def test_apply_corruptions_in_order() -> None:
    part = split_of()
    chained = apply_corruptions(part, ["drop:text:0.5", parse_corruption("noise:audio:1")])
    step = apply_corruption(apply_corruption(part, "drop:text:0.5"), "noise:audio:1")
    assert_equal_split(chained, step)


def test_parse_corruption() -> None:
    spec = parse_corruption("drop:audio:0.5")
    assert spec == CorruptionSpec(kind="drop", modality="audio", level=0.5, seed=0)
    assert parse_corruption("noise:all:1.5:7").seed == 7
    assert parse_corruption({"kind": "temporal_drop", "modality": "text", "level": 0.2}).level == 0.2
    assert parse_corruption(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("drop:audio", "kind:modality:level"),
        ("drop:audio:0.5:1:2", "kind:modality:level"),
        ("blur:audio:0.5", "unknown kind 'blur'"),
        ("drop:smell:0.5", "unknown modality 'smell'"),
        ("drop:audio:half", "level 'half' is not a number"),
        ("drop:audio:1.5", "must be in [0, 1]"),
        ("temporal_drop:text:-0.1", "must be in [0, 1]"),
        ("noise:visual:-1", "must be >= 0"),
        ("noise:visual:nan", "finite"),
        ("drop:audio:0.5:x", "seed 'x' is not an integer"),
        ({"kind": "drop", "modality": "audio", "level": 0.1, "extra": 1}, "extra"),
    ],
)
def test_bad_specs(text: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_corruption(text)  # type: ignore[arg-type]
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_spec_model_validates() -> None:
    with pytest.raises(ValidationError):
        CorruptionSpec(kind="drop", modality="audio", level=2.0)
    with pytest.raises(ValidationError):
        CorruptionSpec(kind="drop", modality="audio", level=0.5, bogus=1)  # type: ignore[call-arg]
    assert CorruptionSpec(kind="noise", modality="all", level=3.0).level == 3.0
