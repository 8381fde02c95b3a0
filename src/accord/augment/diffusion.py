"""QASA's generator (METHODS.md §4): a conditional diffusion model over audio and visual FEATURES.

The paper generates images and audio with pretrained diffusion models; here one small DDPM per generated modality
learns ``p(x_m | text features, y)`` directly in feature space, on the training split only, so it runs on a CPU:

- **Forward process** (Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020, Eq. 4):
  ``q(x_t | x_0) = N(sqrt(ᾱ_t)·x_0, (1 − ᾱ_t)·I)``, implemented in closed form by :func:`q_sample`.
- **Cosine schedule** (Nichol & Dhariwal, "Improved DDPM", ICML 2021, Eq. 17):
  ``ᾱ_t = f(t)/f(0)``, ``f(t) = cos²(((t/T) + s)/(1 + s) · π/2)``, with ``β_t = 1 − ᾱ_t/ᾱ_{t−1}`` clipped at 0.999
  (:func:`cosine_alpha_bar`).
- **Denoiser** ε_θ(x_t, t, c): a residual MLP for utterance vectors (T = 1) or a residual 1-D conv network for
  sequences, each block modulated by the time and condition embedding (FiLM); trained with the simple loss
  ``‖ε − ε_θ(x_t, t, c)‖²`` (Ho et al. 2020, Eq. 14) over real steps only.
- **Condition** c = (summary of the text features, label y). Paper leaves the conditioning open; we use the masked
  mean (and std, for sequences) of the standardised text features and the label scaled to [−1, 1], embedded by an
  MLP, with a learned null condition for a share ``cond_drop`` of the training rows (classifier-free guidance, Ho &
  Salimans 2022; ``guidance = 1`` samples from the plain conditional model).
- **Sampling**: DDIM (Song et al., "Denoising Diffusion Implicit Models", ICLR 2021, Eq. 12) on a sub-sequence of
  ``sample_steps`` of the T training steps; ``eta = 1`` by default (stochastic; η = 0, deterministic DDIM,
  over-disperses these features, see ``GeneratorParams.eta``).

Features are standardised per dimension with training statistics inside the model and returned in the dataset's
own units. A generated sample keeps the length (mask) of the real sample it is conditioned on. Checkpoints are a
safetensors file of weights and buffers plus a JSON config (:meth:`FeatureDiffusion.save` / :func:`load_generator`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from accord.augment.params import GeneratorParams
from accord.core.errors import CheckpointError, DataError
from accord.core.io import atomic_write_bytes, read_json_file, write_json
from accord.data.dataset import SplitData
from accord.models.modules import TemporalConv1d, masked_mean, masked_std, sinusoidal_positions

FORMAT = "accord-qasa-generator"
VERSION = 1
WEIGHTS = "generator.safetensors"
CONFIG = "generator.json"


# ---------------------------------------------------------------------------------------------------- schedule
def cosine_alpha_bar(steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """ᾱ_t for t = 1..T (index t − 1) of the cosine schedule (Nichol & Dhariwal 2021, Eq. 17), float64.

    ``ᾱ_t = f(t)/f(0)``, ``f(t) = cos²(((t/T) + s)/(1 + s)·π/2)``; the implied ``β_t = 1 − ᾱ_t/ᾱ_{t−1}`` are clipped
    at ``max_beta`` (their Sec. 3.2) and ᾱ is recomputed as ``∏ (1 − β)``, so only the last steps change.
    """
    t = torch.arange(steps + 1, dtype=torch.float64)
    f = torch.cos(((t / steps) + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0)


def betas_from_alpha_bar(alpha_bar: Tensor) -> Tensor:
    """β_t = 1 − ᾱ_t/ᾱ_{t−1} (with ᾱ_0 = 1), the per-step noise of the forward chain q(x_t | x_{t−1})."""
    prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    return 1 - alpha_bar / prev


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """Closed-form forward noising ``x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε`` (Ho et al. 2020, Eq. 4).

    ``x0`` and ``noise`` are ``[B, ...]``, ``t [B]`` are 0-based step indices into ``alpha_bar``.
    """
    ab = alpha_bar.to(x0.dtype)[t].view(-1, *([1] * (x0.ndim - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def ddim_timesteps(train_steps: int, sample_steps: int) -> list[int]:
    """Descending 0-based steps of the DDIM sub-sequence ``τ_i = floor(i·T/n)``, i = 0..n−1 (Song et al. 2021,
    Sec. 4.2, "linear" τ). Starting below T − 1 skips the cosine schedule's last step, whose β is clipped at 0.999
    (ᾱ ≈ 2e-7 for T = 100): predicting x̂_0 there amplifies the ε error by 1/sqrt(ᾱ_t) and the samples blow up."""
    n = min(sample_steps, train_steps)
    return sorted({(i * train_steps) // n for i in range(n)}, reverse=True)


# ---------------------------------------------------------------------------------------------------- denoiser
class DenoiserBlock(nn.Module):
    """Pre-LN residual block ``h + W2·Drop(SiLU(W1·FiLM(LN(h), e)))``; W are linear maps (vectors) or 1-D convs
    over time (sequences). FiLM: ``LN(h)·(1 + γ(e)) + β(e)`` from the time+condition embedding ``e``."""

    def __init__(self, hidden: int, temporal: bool, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.temporal = temporal
        self.norm = nn.LayerNorm(hidden)
        self.film = nn.Linear(hidden, 2 * hidden)
        self.lin1: nn.Module = TemporalConv1d(hidden, hidden, kernel_size) if temporal else nn.Linear(hidden, hidden)
        self.lin2: nn.Module = TemporalConv1d(hidden, hidden, kernel_size) if temporal else nn.Linear(hidden, hidden)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(dropout)
        last = self.lin2.conv if temporal else self.lin2
        assert isinstance(last, nn.Conv1d | nn.Linear)
        nn.init.zeros_(last.weight)  # each block starts as the identity
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def _layer(self, layer: nn.Module, h: Tensor, mask: Tensor) -> Tensor:
        return layer(h, mask) if self.temporal else layer(h)

    def forward(self, h: Tensor, e: Tensor, mask: Tensor) -> Tensor:
        gamma, beta = self.film(e).unsqueeze(1).chunk(2, dim=-1)
        z = self.norm(h) * (1 + gamma) + beta
        z = self.drop(self.act(self._layer(self.lin1, self.act(z), mask)))
        return h + self._layer(self.lin2, z, mask)


class Denoiser(nn.Module):
    """ε_θ(x_t, t, c) for one modality: ``forward(x [B, T, D], mask [B, T], t [B], cond [B, C], drop [B] | None)``.

    ``temporal=False`` is the MLP denoiser for utterance vectors (every layer position-wise), ``temporal=True`` the
    1-D conv denoiser for sequences. Rows with ``drop`` True use the learned null condition instead of ``cond``.
    Output is zero at padded steps.
    """

    time_table: Tensor  # buffer [steps, hidden]

    def __init__(self, dim: int, cond_dim: int, steps: int, hidden: int, blocks: int, temporal: bool,
                 kernel_size: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.steps, self.hidden = steps, hidden
        self.inp = nn.Linear(dim, hidden)
        self.time_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.cond_mlp = nn.Sequential(nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.null_cond = nn.Parameter(torch.zeros(hidden))
        self.blocks = nn.ModuleList(DenoiserBlock(hidden, temporal, kernel_size, dropout) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        self.register_buffer("time_table", sinusoidal_positions(steps, hidden), persistent=False)

    def embed(self, t: Tensor, cond: Tensor, drop: Tensor | None = None) -> Tensor:
        """Time + condition embedding ``e [B, H]`` (the null condition where ``drop``)."""
        c = self.cond_mlp(cond)
        if drop is not None:
            c = torch.where(drop.unsqueeze(1), self.null_cond.expand_as(c), c)
        return self.time_mlp(self.time_table[t]) + c

    def forward(self, x: Tensor, mask: Tensor, t: Tensor, cond: Tensor, drop: Tensor | None = None) -> Tensor:
        e = self.embed(t, cond, drop)
        m = mask.unsqueeze(-1).to(x.dtype)
        h = self.inp(x) * m
        for block in self.blocks:
            h = block(h, e, mask) * m
        return self.out(torch.nn.functional.silu(self.out_norm(h))) * m


# ---------------------------------------------------------------------------------------------------- generator
def summary_vector(x: Tensor, lengths: Tensor) -> Tensor:
    """One vector per sample from a ``[N, T, D]`` sequence: the vector itself for T = 1, else masked mean ⊕ std."""
    if x.shape[1] == 1:
        return x[:, 0] * (lengths > 0).unsqueeze(1).to(x.dtype)
    mask = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    return torch.cat([masked_mean(x, mask), masked_std(x, mask)], dim=-1)


def _column_stats(x: Tensor, lengths: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std over real steps (std 1 for constant columns), like ``data.standardize``."""
    mask = (torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    count = mask.sum().clamp_min(1)
    mean = (x * mask).sum(dim=(0, 1)) / count
    std = ((((x - mean) * mask) ** 2).sum(dim=(0, 1)) / count).sqrt()
    return mean, torch.where(std < eps, torch.ones_like(std), std)


def ids_digest(ids: list[str]) -> str:
    """SHA-256 of the ordered sample ids (ties a generator to the training split it was fitted on)."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


class FeatureDiffusion(nn.Module):
    """One conditional DDPM per generated modality, with the standardisation statistics of the training split.

    Build it with :func:`fit_generator` or :func:`load_generator`; sample with :meth:`generate`.
    """

    # buffers (registered in __init__)
    alpha_bar: Tensor
    text_mean: Tensor
    text_std: Tensor

    def __init__(self, params: GeneratorParams, dims: dict[str, int], seq_lens: dict[str, int],
                 label_range: tuple[float, float]) -> None:
        super().__init__()
        self.params = params
        self.dims, self.seq_lens = dict(dims), dict(seq_lens)
        self.label_range = (float(label_range[0]), float(label_range[1]))
        self.text_summary_dim = dims["text"] * (1 if seq_lens["text"] == 1 else 2)
        self.register_buffer("alpha_bar", cosine_alpha_bar(params.diffusion_steps, params.cosine_s).float())
        self.register_buffer("text_mean", torch.zeros(self.text_summary_dim))
        self.register_buffer("text_std", torch.ones(self.text_summary_dim))
        self.denoisers = nn.ModuleDict()
        for m in params.modalities:
            self.register_buffer(f"mean_{m}", torch.zeros(dims[m]))
            self.register_buffer(f"std_{m}", torch.ones(dims[m]))
            self.denoisers[m] = Denoiser(dims[m], self.text_summary_dim + 1, params.diffusion_steps, params.hidden,
                                         params.blocks, temporal=seq_lens[m] > 1, kernel_size=params.kernel_size,
                                         dropout=params.dropout)
        self.info: dict[str, Any] = {}

    @property
    def modalities(self) -> list[str]:
        return list(self.params.modalities)

    def stats(self, m: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"mean_{m}"), getattr(self, f"std_{m}")

    def condition(self, text: Tensor, text_lengths: Tensor, labels: Tensor) -> Tensor:
        """c = [standardised text summary, y scaled to [−1, 1]] (``[N, C]``)."""
        s = (summary_vector(text, text_lengths) - self.text_mean) / self.text_std
        lo, hi = self.label_range
        y = (2 * labels.float() - lo - hi) / max(hi - lo, 1e-12)
        return torch.cat([s, y.unsqueeze(1)], dim=1)

    def loss(self, m: str, x0: Tensor, mask: Tensor, cond: Tensor, gen: torch.Generator) -> Tensor:
        """Simple DDPM loss ``E‖ε − ε_θ(x_t, t, c)‖²`` over real steps (x0 standardised, Ho et al. 2020 Eq. 14)."""
        b = x0.shape[0]
        t = torch.randint(0, self.params.diffusion_steps, (b,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        drop = torch.rand(b, generator=gen) < self.params.cond_drop
        xt = q_sample(x0, t, noise, self.alpha_bar)
        pred = self.denoisers[m](xt, mask, t, cond, drop)
        w = mask.unsqueeze(-1).to(x0.dtype)
        return (((pred - noise) ** 2) * w).sum() / (w.sum() * x0.shape[2]).clamp_min(1)

    @torch.no_grad()
    def ddim(self, m: str, cond: Tensor, mask: Tensor, gen: torch.Generator, steps: int | None = None,
             eta: float | None = None, guidance: float | None = None) -> Tensor:
        """DDIM sampling (Song et al. 2021, Eq. 12) of standardised features ``[N, T, D]`` for modality ``m``.

        ``x_{prev} = sqrt(ᾱ_prev)·x̂_0 + sqrt(1 − ᾱ_prev − σ²)·ε̂ + σ·z``, ``x̂_0 = (x_t − sqrt(1 − ᾱ_t)·ε̂)/sqrt(ᾱ_t)``,
        ``σ = η·sqrt((1 − ᾱ_prev)/(1 − ᾱ_t))·sqrt(1 − ᾱ_t/ᾱ_prev)``; ε̂ is guided when ``guidance ≠ 1``.
        """
        p = self.params
        net = self.denoisers[m]
        steps = p.sample_steps if steps is None else steps
        eta = p.eta if eta is None else eta
        w = p.guidance if guidance is None else guidance
        n, t_len = mask.shape
        x = torch.randn(n, t_len, self.dims[m], generator=gen)
        maskf = mask.unsqueeze(-1).to(x.dtype)
        x = x * maskf
        seq = ddim_timesteps(p.diffusion_steps, steps)
        ab = self.alpha_bar.double()
        for i, t in enumerate(seq):
            tt = torch.full((n,), t, dtype=torch.long)
            if w == 1.0:
                eps = net(x, mask, tt, cond)
            else:
                both = net(torch.cat([x, x]), torch.cat([mask, mask]), torch.cat([tt, tt]), torch.cat([cond, cond]),
                           torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]))
                eps_c, eps_u = both[:n], both[n:]
                eps = eps_u + w * (eps_c - eps_u)
            a_t = float(ab[t])
            a_prev = float(ab[seq[i + 1]]) if i + 1 < len(seq) else 1.0
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            if p.clip_x0 is not None:
                x0 = x0.clamp(-p.clip_x0, p.clip_x0)
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)  # consistent with the clipped x̂_0
            sigma = eta * math.sqrt(max(0.0, (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)))
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(0.0, 1 - a_prev - sigma**2)) * eps
            if sigma > 0:
                x = x + sigma * torch.randn(x.shape, generator=gen)
            x = x * maskf
        return x

    @torch.no_grad()
    def generate(self, split: SplitData, index: Tensor | None = None, seed: int = 0, batch_size: int = 4096,
                 modalities: list[str] | None = None) -> dict[str, Tensor]:
        """New features for rows ``index`` of ``split``, conditioned on their text and label (dataset units).

        Returns modality -> ``[n, T_m, D_m]`` with each row's real length kept (zeros after it; a row whose
        modality is missing stays all zero). The same ``seed`` gives the same samples.
        """
        self.eval()
        idx = torch.arange(len(split)) if index is None else torch.as_tensor(index, dtype=torch.long)
        gen = torch.Generator().manual_seed(seed)
        self._check_split(split)
        out: dict[str, Tensor] = {}
        for m in modalities or self.modalities:
            if m not in self.denoisers:
                raise DataError(f"generator has no model for modality {m!r}; it generates {self.modalities}")
            mean, std = self.stats(m)
            parts = []
            for start in range(0, len(idx), batch_size):
                rows = idx[start:start + batch_size]
                cond = self.condition(split.features["text"][rows], split.lengths["text"][rows], split.labels[rows])
                lens = split.lengths[m][rows]
                mask = torch.arange(split.features[m].shape[1]).unsqueeze(0) < lens.unsqueeze(1)
                z = self.ddim(m, cond, mask, gen)
                parts.append((z * std + mean) * mask.unsqueeze(-1))
            out[m] = torch.cat(parts) if parts else split.features[m][:0].clone()
        return out

    def _check_split(self, split: SplitData) -> None:
        dims = split.dims()
        for m in ("text", *self.modalities):
            if dims[m] != self.dims[m]:
                raise DataError(f"generator was fitted on {m} features of dim {self.dims[m]}, got {dims[m]}")

    # ------------------------------------------------------------------------------------------------ save/load
    def save(self, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``generator.safetensors`` (weights and buffers) and ``generator.json`` atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(out / WEIGHTS, st_save(state))
        write_json(out / CONFIG, {
            "format": FORMAT, "version": VERSION, "params": self.params.model_dump(mode="json"),
            "dims": self.dims, "seq_lens": self.seq_lens, "label_range": list(self.label_range),
            **self.info, **(extra or {}),
        })
        return out


def read_generator_config(path: str | Path) -> dict[str, Any]:
    """``generator.json`` of a generator folder; errors name the file and what was expected."""
    file = Path(path) / CONFIG
    cfg = read_json_file(file, CheckpointError, "a generator folder written by `accord augment fit`")
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{file}: key 'format' must be {FORMAT!r}")
    if cfg.get("version") != VERSION:
        raise CheckpointError(f"{file}: key 'version' is {cfg.get('version')!r}; this Accord reads {VERSION}")
    for key in ("params", "dims", "seq_lens", "label_range"):
        if key not in cfg:
            raise CheckpointError(f"{file}: missing key {key!r}")
    return cfg


def load_generator(path: str | Path) -> FeatureDiffusion:
    """A generator saved by :meth:`FeatureDiffusion.save` (weights via safetensors, no code runs on load)."""
    root = Path(path)
    cfg = read_generator_config(root)
    try:
        params = GeneratorParams(**cfg["params"])
    except ValueError as err:
        raise CheckpointError(f"{root / CONFIG}: key 'params' is invalid ({str(err).splitlines()[0]})") from None
    model = FeatureDiffusion(params, cfg["dims"], cfg["seq_lens"], tuple(cfg["label_range"]))
    file = root / WEIGHTS
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (the generator's weights)")
    try:
        state = st_load(file.read_bytes())
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(f"{file}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{file}: weights do not fit {root / CONFIG} ({str(err).splitlines()[0]})") from None
    model.info = {k: v for k, v in cfg.items() if k not in ("format", "version", "params", "dims", "seq_lens",
                                                            "label_range")}
    return model.eval()


def fit_generator(train: SplitData, params: GeneratorParams, label_range: tuple[float, float] = (-3.0, 3.0),
                  seed: int = 0, log: Callable[[str], None] | None = None) -> FeatureDiffusion:
    """Fit one conditional DDPM per generated modality on ``train`` (the TRAINING split only).

    Each modality is trained for ``params.train_steps`` AdamW steps on random batches of its non-missing rows, with
    a cosine learning-rate decay; sampling uses the exponential moving average of the weights (``params.ema``).
    The global torch RNG is left as it was (the fit draws from its own seeded generator), so fitting inside a
    training run does not change the run's random stream.
    """
    t0 = time.perf_counter()
    history: dict[str, list[float]] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # weight init and dropout
        model = FeatureDiffusion(params, train.dims(), train.seq_lens(), label_range)
        gen = torch.Generator().manual_seed(seed)
        t_summary = summary_vector(train.features["text"], train.lengths["text"])
        t_mean, t_std = _column_stats(t_summary.unsqueeze(1), torch.ones(len(train), dtype=torch.long))
        model.text_mean.copy_(t_mean)
        model.text_std.copy_(t_std)
        cond_all = model.condition(train.features["text"], train.lengths["text"], train.labels)
        for m in params.modalities:
            x, lens = train.features[m], train.lengths[m]
            rows = (lens > 0).nonzero().flatten()
            if len(rows) < 2:
                raise DataError(f"training split: modality {m!r} has {len(rows)} non-missing rows; the generator "
                                "needs at least 2")
            mean, std = _column_stats(x[rows], lens[rows])
            getattr(model, f"mean_{m}").copy_(mean)
            getattr(model, f"std_{m}").copy_(std)
            mask_all = torch.arange(x.shape[1]).unsqueeze(0) < lens.unsqueeze(1)
            z_all = ((x - mean) / std) * mask_all.unsqueeze(-1)
            net = model.denoisers[m]
            ema = copy.deepcopy(net).requires_grad_(False) if params.ema > 0 else None
            ema_params: list[Tensor] = list(ema.parameters()) if ema is not None else []
            net_params: list[Tensor] = list(net.parameters())
            opt = torch.optim.AdamW(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / params.train_steps))))
            net.train()
            losses: list[float] = []
            running = 0.0
            bs = min(params.batch_size, len(rows))
            for step in range(params.train_steps):
                pick = rows[torch.randint(0, len(rows), (bs,), generator=gen)]
                loss = model.loss(m, z_all[pick], mask_all[pick], cond_all[pick], gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                sched.step()
                if ema is not None:
                    with torch.no_grad():
                        torch._foreach_lerp_(ema_params, net_params, 1 - params.ema)
                running += float(loss.detach())
                if (step + 1) % 100 == 0 or step + 1 == params.train_steps:
                    k = (step % 100) + 1
                    losses.append(round(running / k, 5))
                    running = 0.0
                    if log is not None and ((step + 1) % 1000 == 0 or step + 1 == params.train_steps):
                        log(f"generator {m}: step {step + 1}/{params.train_steps} loss {losses[-1]:.4f}")
            if ema is not None:
                net.load_state_dict(ema.state_dict())
            history[m] = losses
    model.eval()
    model.info = {"fit_seconds": round(time.perf_counter() - t0, 3), "n_train": len(train),
                  "train_ids_sha256": ids_digest(list(train.ids)), "seed": seed, "loss_per_100_steps": history}
    return model
