"""Typed parameters of QASA (METHODS.md §4): the generator, the quality scorer and the ``augment`` config section.

Kept free of torch so that :mod:`accord.config` can import them cheaply. Every model rejects unknown keys, so a
typo such as ``augment.generator.train_step`` is a one-line :class:`~accord.core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Weighting = Literal["quality", "uniform", "fidelity", "consistency"]
"""How a generated row's loss is weighted: ``q = q_fid·q_con`` (QASA), 1 (no scoring), ``q_fid`` or ``q_con``."""

GENERATED_MODALITIES: tuple[str, str] = ("audio", "visual")
"""The modalities QASA may generate; text is always kept from the real sample (METHODS.md §4)."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneratorParams(_Params):
    """The conditional feature-space diffusion model (:mod:`accord.augment.diffusion`)."""

    diffusion_steps: int = Field(100, ge=2, le=1000)
    """T of the forward process (METHODS.md: 50–200)."""
    cosine_s: float = Field(0.008, gt=0.0, lt=1.0)
    """Offset ``s`` of the cosine schedule (Nichol & Dhariwal 2021, Eq. 17)."""
    sample_steps: int = Field(25, ge=1)
    """DDIM steps at sampling (a sub-sequence of the T training steps)."""
    eta: float = Field(1.0, ge=0.0, le=1.0)
    """DDIM stochasticity (0: deterministic DDIM, 1: DDPM-like ancestral sampling on the sub-sequence). On MOSI-U
    features η = 0 over-disperses the samples (per-dimension std 1.4× the real one) while η = 1 gives 0.8×, with
    nearest-real-neighbour distances like those between real rows; hence the default 1."""
    hidden: int = Field(128, ge=8)
    """Width of the denoiser (MLP for T = 1 vectors, 1-D conv for sequences)."""
    blocks: int = Field(3, ge=1)
    """Residual blocks of the denoiser."""
    kernel_size: int = Field(3, ge=1)
    """Kernel of the 1-D convolutions of the sequence denoiser (odd)."""
    train_steps: int = Field(1500, ge=1)
    """Optimiser steps per generated modality. 1500 × batch 256 was chosen on MOSI-U by the denoising loss on the
    VALIDATION split (mean ε-MSE over t, audio/visual 0.440/0.254) over 3000 × 128 (0.463/0.249) and 2000 × 256
    (0.468/0.238), and is the cheapest of the three."""
    batch_size: int = Field(256, ge=2)
    lr: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    ema: float = Field(0.995, ge=0.0, lt=1.0)
    """Decay of the exponential moving average of the weights used for sampling (0: no EMA)."""
    cond_drop: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of training rows whose condition is replaced by a learned null condition (classifier-free
    guidance, Ho & Salimans 2022)."""
    guidance: float = Field(1.0, ge=0.0)
    """Guidance weight w at sampling: ε = ε_null + w·(ε_cond − ε_null); 1 is the plain conditional model."""
    clip_x0: float | None = Field(6.0, gt=0.0)
    """Clip the predicted x0 to ±clip_x0 (standardised units) in each DDIM step; null: no clipping."""
    modalities: list[str] = Field(default_factory=lambda: list(GENERATED_MODALITIES))
    """Modalities to generate (audio and/or visual)."""

    @field_validator("modalities")
    @classmethod
    def _mods(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in GENERATED_MODALITIES]
        if bad or not v or len(set(v)) != len(v):
            raise ValueError(f"expected a non-empty list of distinct modalities from audio, visual; got {v}")
        return v

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd (same padding), got {v}")
        return v


class ScorerParams(_Params):
    """The decoupled quality scorer (:mod:`accord.augment.quality`)."""

    k: int = Field(5, ge=1)
    """Neighbours of the kNN distance behind q_fid."""
    folds: int = Field(5, ge=2)
    """Group folds of the cross-fitted consistency regressor behind q_con."""
    alphas: list[float] = Field(default_factory=lambda: [0.1, 1.0, 10.0, 100.0, 1000.0])
    """Ridge penalties tried for the text and the modality block of the consistency regressor (every pair; chosen
    by out-of-fold MAE on the training split)."""
    tau: float = Field(0.5, gt=0.0, le=1.0)
    """Typicality at which q_fid saturates at 1: q_fid = min(1, S/τ), S = share of real training rows at least
    as far from their neighbours. With τ = 0.5 a sample as typical as the median real row scores 1."""


class AugmentConfig(_Params):
    """The ``augment`` section: QASA training with generated audio/visual variants (off by default)."""

    source: str = "none"
    """``none`` (off), ``fit`` (fit a generator on this run's training split), ``noise`` (Gaussian-noise
    copies, the same budget), or a path: a generator folder from ``accord augment fit`` or a sample folder from
    ``accord augment sample``."""
    per_sample: int = Field(1, ge=1)
    """K: generated rows added per real training row (text and label kept from the real row)."""
    weighting: Weighting = "quality"
    """Loss weight of a generated row: quality (q_fid·q_con), uniform (1), fidelity (q_fid), consistency (q_con).
    Noise copies (source: noise) always weigh 1."""
    noise_level: float = Field(0.5, gt=0.0)
    """source: noise — std of the added Gaussian noise in units of each feature's training std."""
    seed: int = 0
    """Seed of generator fitting, sampling and noise."""
    generator: GeneratorParams = Field(default_factory=GeneratorParams)
    scorer: ScorerParams = Field(default_factory=ScorerParams)

    @property
    def enabled(self) -> bool:
        return self.source != "none"
